import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { ApiError } from './errors.js';

type ScryptParams = { N: number; r: number; p: number };

/** What a user record keeps of a password. Records without `scrypt` were hashed with LEGACY_PARAMS. */
export type StoredPassword = { salt: string; hash: string; scrypt?: ScryptParams };

/** The cost every hash had before it was recorded with the hash (N = 2^14). */
const LEGACY_PARAMS: ScryptParams = { N: 16_384, r: 8, p: 1 };
const HASH_BYTES = 32;
const SALT_BYTES = 16;

function scrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // scrypt needs 128 * N * r bytes; twice that leaves room for Node's own accounting.
    scryptCallback(password, salt, HASH_BYTES, { ...params, maxmem: 256 * params.N * params.r }, (error, key) =>
      error ? reject(error) : resolve(key),
    );
  });
}

/**
 * Password hashing with scrypt at OWASP's recommended cost (N = 2^17, r = 8,
 * p = 1: about 0.4 s of one core and 128 MiB here). Hashes run on libuv's
 * thread pool, never the event loop, and at most `concurrentMax` at once
 * (one core is left to the event loop, which serves every bid) with at most
 * `waitingMax` queued: each one is expensive on purpose, so an unbounded
 * queue would let a burst of sign-ins hold gigabytes and delay everyone's for
 * minutes. Past the queue, sign-ins answer `unavailable`.
 */
export class PasswordHasher {
  private readonly params: ScryptParams;
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    cost: number,
    private readonly concurrentMax = Math.max(1, availableParallelism() - 1),
    private readonly waitingMax = 64,
  ) {
    this.params = { N: cost, r: 8, p: 1 };
  }

  async hash(password: string): Promise<StoredPassword> {
    const salt = randomBytes(SALT_BYTES);
    const hash = await this.bounded(() => scrypt(password, salt, this.params));
    return { salt: salt.toString('base64'), hash: hash.toString('base64'), scrypt: this.params };
  }

  /**
   * Whether the password matches. With no stored password (an unknown user)
   * a hash is still computed, so timing does not tell which usernames exist.
   * A wrong password against an outdated (cheaper) hash also pays for one at
   * today's cost, as a right one does for its upgrade: otherwise a quick
   * refusal would tell which accounts exist and are not yet upgraded.
   */
  async verify(password: string, stored: StoredPassword | null): Promise<boolean> {
    const params = stored?.scrypt ?? (stored ? LEGACY_PARAMS : this.params);
    const salt = stored ? Buffer.from(stored.salt, 'base64') : randomBytes(SALT_BYTES);
    const hash = await this.bounded(() => scrypt(password, salt, params));
    if (!stored) return false;
    const expected = Buffer.from(stored.hash, 'base64');
    const matches = expected.length === hash.length && timingSafeEqual(hash, expected);
    if (!matches && this.outdated(stored))
      await this.bounded(() => scrypt(password, randomBytes(SALT_BYTES), this.params));
    return matches;
  }

  /** A stored hash made at a lower cost than today's: rehash it at the next successful sign-in. */
  outdated(stored: StoredPassword): boolean {
    const params = stored.scrypt ?? LEGACY_PARAMS;
    return params.N < this.params.N || params.r < this.params.r || params.p < this.params.p;
  }

  private async bounded<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrentMax) {
      if (this.waiting.length >= this.waitingMax)
        throw new ApiError('unavailable', 'too many sign-ins at once; retry shortly');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      // Hand the slot straight to the next one waiting, or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
