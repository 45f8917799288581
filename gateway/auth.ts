import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { USER_ID_MAX } from '../protocol/index.js';
import { isWrongLastSequence } from '../protocol/nats-errors.js';
import { ApiError } from './errors.js';
import type { PasswordHasher, StoredPassword } from './passwords.js';

/**
 * 3 to 32 letters, digits, `_`, `-` and `.`, with no dot first, last or next
 * to another: the lower-cased name is a KV key (`user.<name>`), whose dots
 * separate subject tokens that must not be empty.
 */
export const USERNAME_PATTERN = /^(?!.*\.\.)[A-Za-z0-9_-][A-Za-z0-9_.-]{1,30}[A-Za-z0-9_-]$/;
export const PASSWORD_LIMITS = { min: 8, max: 256 };
const TOKEN_BYTES_MAX = 512;

/**
 * Signed, expiring tokens: `v1.<payload>.<signature>`, the payload
 * base64url JSON `{u: userId, exp: ms}`, the signature HMAC-SHA256 over
 * `v1.<payload>` with the gateways' shared secret. Stateless: any gateway
 * checks any token without a lookup.
 */
export class Tokens {
  private readonly key: Buffer;

  constructor(
    secret: string,
    private readonly ttlMs: number,
    private readonly clock: () => number = Date.now,
    /** Users an operator disabled: their tokens stop working at once (DisabledUsers). */
    private readonly disabled: (userId: number) => boolean = () => false,
  ) {
    this.key = Buffer.from(secret);
  }

  /** ApiError `user_disabled` for a user an operator disabled. */
  checkEnabled(userId: number): number {
    if (this.disabled(userId)) throw new ApiError('user_disabled');
    return userId;
  }

  mint(userId: number, ttlMs = this.ttlMs): { token: string; expiresAt: number } {
    const expiresAt = this.clock() + ttlMs;
    const payload = Buffer.from(JSON.stringify({ u: userId, exp: expiresAt })).toString('base64url');
    return { token: `v1.${payload}.${this.sign(`v1.${payload}`)}`, expiresAt };
  }

  /** The user a token names; ApiError `unauthenticated` for a missing, malformed, forged or expired one. */
  verify(token: unknown): number {
    if (typeof token !== 'string' || token.length === 0) throw new ApiError('unauthenticated', 'a token is required');
    if (token.length > TOKEN_BYTES_MAX) throw new ApiError('unauthenticated', 'malformed token');
    const parts = token.split('.');
    if (parts.length !== 3 || parts[0] !== 'v1') throw new ApiError('unauthenticated', 'malformed token');
    const expected = Buffer.from(this.sign(`v1.${parts[1]}`));
    const given = Buffer.from(parts[2]);
    if (given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new ApiError('unauthenticated', 'invalid token signature');
    let claims: { u?: unknown; exp?: unknown };
    try {
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString()) as typeof claims;
    } catch {
      throw new ApiError('unauthenticated', 'malformed token');
    }
    if (
      typeof claims.u !== 'number' ||
      !Number.isSafeInteger(claims.u) ||
      claims.u < 1 ||
      claims.u > USER_ID_MAX ||
      typeof claims.exp !== 'number'
    ) {
      throw new ApiError('unauthenticated', 'malformed token');
    }
    if (claims.exp <= this.clock()) throw new ApiError('unauthenticated', 'token expired');
    return this.checkEnabled(claims.u);
  }

  private sign(data: string): string {
    return createHmac('sha256', this.key).update(data).digest('base64url');
  }
}

/** GATEWAY_SECRET, or the secret file (made with a random secret for local runs when missing). */
export function loadSecret(secret: string | null, file: string): { secret: string; generated: boolean } {
  if (secret) return { secret, generated: false };
  if (existsSync(file)) {
    const text = readFileSync(file, 'utf8').trim();
    if (text.length < 16) throw new Error(`secret file ${file} holds fewer than 16 characters`);
    return { secret: text, generated: false };
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const generated = randomBytes(32).toString('base64url');
  writeFileSync(file, `${generated}\n`, { mode: 0o600, flag: 'wx' });
  return { secret: generated, generated: true };
}

/** A user record. `userId` is absent in records never rewritten: their id is the revision of their create. */
type StoredUser = StoredPassword & { username: string; createdAt: number; userId?: number };

/**
 * Users in a NATS KV bucket shared by every gateway. The key is the
 * lower-cased username, created with `create` (fails if taken), and the
 * user id is the revision of that create: unique and increasing across the
 * bucket with no counter to contend on. A record rewritten later (a password
 * hash upgraded to today's cost) keeps that first revision as `userId`.
 */
export class UserStore {
  constructor(
    private readonly kv: KV,
    private readonly passwords: PasswordHasher,
    private readonly logger: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  async register(username: string, password: string): Promise<{ userId: number; username: string }> {
    const value: StoredUser = { username, ...(await this.passwords.hash(password)), createdAt: this.clock() };
    let revision: number;
    // The KV's create fails with "wrong last sequence" when the key exists.
    try {
      revision = await this.kv.create(keyOf(username), JSON.stringify(value));
    } catch (error) {
      if (isWrongLastSequence(error)) throw new ApiError('username_taken');
      throw new ApiError('unavailable', 'the user store did not answer', { cause: error });
    }
    if (revision > USER_ID_MAX) throw new ApiError('unavailable', 'user ids are exhausted');
    return { userId: revision, username };
  }

  /**
   * The user id for a correct username and password; `invalid_credentials`
   * otherwise, the same answer after the same work for a wrong password, an
   * unknown user and a name that could never have been registered.
   */
  async authenticate(username: string, password: string): Promise<number> {
    if (!USERNAME_PATTERN.test(username)) {
      await this.passwords.verify(password, null);
      throw new ApiError('invalid_credentials');
    }
    let entry;
    try {
      entry = await this.kv.get(keyOf(username));
    } catch (error) {
      throw new ApiError('unavailable', 'the user store did not answer', { cause: error });
    }
    const stored: StoredUser | null = entry && entry.operation === 'PUT' ? entry.json<StoredUser>() : null;
    if (!(await this.passwords.verify(password, stored)) || !stored || !entry)
      throw new ApiError('invalid_credentials');
    const userId = stored.userId ?? entry.revision;
    if (this.passwords.outdated(stored)) await this.upgrade(username, password, { ...stored, userId }, entry.revision);
    return userId;
  }

  /** Rewrites an old-cost hash at today's cost. Best effort: a failure leaves the old hash, which still works. */
  private async upgrade(
    username: string,
    password: string,
    stored: StoredUser & { userId: number },
    revision: number,
  ): Promise<void> {
    try {
      const value: StoredUser = { ...stored, ...(await this.passwords.hash(password)) };
      await this.kv.update(keyOf(username), JSON.stringify(value), revision);
      this.logger.info({ userId: stored.userId }, 'password hash upgraded to the current cost');
    } catch (error) {
      // Another gateway upgraded it first (the revision moved on): nothing left to do.
      if (isWrongLastSequence(error))
        this.logger.info({ userId: stored.userId }, 'password hash already upgraded elsewhere');
      else this.logger.warn({ err: error, userId: stored.userId }, 'password hash not upgraded; kept the old one');
    }
  }
}

const keyOf = (username: string) => `user.${username.toLowerCase()}`;
