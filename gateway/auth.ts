import { createHmac, randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { KV } from '@nats-io/kv';
import { USER_ID_MAX } from '../protocol/index.js';
import { isWrongLastSequence } from '../engine/log.js';
import { ApiError } from './errors.js';

const scrypt = promisify(scryptCallback) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>;

/** scrypt cost: ~50 ms of one core per hash here; run on libuv's thread pool, never the event loop. */
const SCRYPT = { N: 16_384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const HASH_BYTES = 32;
export const USERS_BUCKET = 'auction_users';
export const USERNAME_PATTERN = /^[A-Za-z0-9_.-]{3,32}$/;
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
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new ApiError('unauthenticated', 'invalid token signature');
    let claims: { u?: unknown; exp?: unknown };
    try {
      claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString()) as typeof claims;
    } catch {
      throw new ApiError('unauthenticated', 'malformed token');
    }
    if (typeof claims.u !== 'number' || !Number.isSafeInteger(claims.u) || claims.u < 1 || claims.u > USER_ID_MAX || typeof claims.exp !== 'number') {
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
  mkdirSync(dirname(file), { recursive: true });
  const generated = randomBytes(32).toString('base64url');
  writeFileSync(file, `${generated}\n`, { mode: 0o600, flag: 'wx' });
  return { secret: generated, generated: true };
}

type StoredUser = { username: string; salt: string; hash: string; createdAt: number };

/**
 * Users in a NATS KV bucket shared by every gateway. The key is the
 * lower-cased username, created with `create` (fails if taken), and the
 * user id is the revision of that create: unique and increasing across the
 * bucket with no counter to contend on. Entries are never rewritten, so the
 * revision stays the id.
 */
export class UserStore {
  constructor(private readonly kv: KV, private readonly clock: () => number = Date.now) {}

  async register(username: string, password: string): Promise<{ userId: number; username: string }> {
    const salt = randomBytes(16);
    const hash = await scrypt(password, salt, HASH_BYTES, SCRYPT);
    const value: StoredUser = { username, salt: salt.toString('base64'), hash: hash.toString('base64'), createdAt: this.clock() };
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

  /** The user id for a correct username and password; `invalid_credentials` otherwise (same answer for both). */
  async authenticate(username: string, password: string): Promise<number> {
    let entry;
    try {
      entry = await this.kv.get(keyOf(username));
    } catch (error) {
      throw new ApiError('unavailable', 'the user store did not answer', { cause: error });
    }
    // Hash even for an unknown user, so timing does not tell which usernames exist.
    const stored: StoredUser | null = entry && entry.operation === 'PUT' ? (entry.json() as StoredUser) : null;
    const salt = stored ? Buffer.from(stored.salt, 'base64') : randomBytes(16);
    const hash = await scrypt(password, salt, HASH_BYTES, SCRYPT);
    if (!stored || !entry || !timingSafeEqual(hash, Buffer.from(stored.hash, 'base64'))) throw new ApiError('invalid_credentials');
    return entry.revision;
  }
}

const keyOf = (username: string) => `user.${username.toLowerCase()}`;

