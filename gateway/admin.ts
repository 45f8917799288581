import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { commandError, decode, encode, isUserId } from '../protocol/index.js';
import { adminSubjects, answerStatus } from '../protocol/cluster.js';
import type { Tokens } from './auth.js';

/** Longest token an operator may mint: 30 days. */
const MINT_TTL_MAX_MS = 30 * 24 * 3_600_000;

/**
 * Users an operator disabled (KV `auction_user_flags`, key `u<userId>`),
 * followed by a watch: every gateway refuses their tokens and sign-ins at
 * once and ends their open connections. Bounded by the number of disabled
 * users, which only operators can grow.
 */
export class DisabledUsers {
  private readonly users = new Set<number>();
  private watcher: { stop(): void } | null = null;

  constructor(private readonly kv: KV, private readonly logger: Logger) {}

  /** Resolves once every current entry is known. */
  async start(onDisabled: (userId: number) => void): Promise<void> {
    // The watch first delivers the last value of every key (deletions included): as many as the bucket holds.
    let initialLeft = (await this.kv.status()).values;
    let markReady: () => void = () => undefined;
    const initial = initialLeft === 0 ? Promise.resolve() : new Promise<void>((resolve) => (markReady = resolve));
    const iterator = await this.kv.watch();
    this.watcher = iterator;
    void (async () => {
      for await (const entry of iterator) {
        const userId = Number(entry.key.slice(1));
        if (!isUserId(userId)) continue;
        if (entry.operation === 'PUT') {
          if (!this.users.has(userId)) {
            this.users.add(userId);
            this.logger.warn({ userId }, 'user disabled by an operator');
            onDisabled(userId);
          }
        } else {
          this.users.delete(userId);
        }
        if (initialLeft > 0 && --initialLeft === 0) markReady();
      }
    })().catch((error: unknown) => this.logger.warn({ err: error }, 'disabled-users watch ended'));
    await initial;
  }

  has(userId: number): boolean {
    return this.users.has(userId);
  }

  stop(): void {
    this.watcher?.stop();
  }
}

export type GatewayIdentity = { id: string; startedAt: number; listen: () => string; connections: () => number; subscriptions: () => number; unhandledRejections: () => number };

/**
 * The gateway's side of operations: it answers `auctionctl status` and mints
 * tokens for `auctionctl token mint` (subject `auction.admin.gateway`, which
 * only the admin NATS user may publish to; any one gateway answers).
 */
export function serveAdmin(nc: NatsConnection, tokens: Tokens, me: GatewayIdentity, logger: Logger): Subscription[] {
  const status = answerStatus(nc, () => ({ kind: 'gateway', id: me.id, pid: process.pid, startedAt: me.startedAt, listen: me.listen(), connections: me.connections(), subscriptions: me.subscriptions(), unhandledRejections: me.unhandledRejections() }));
  const admin = nc.subscribe(adminSubjects.gateway, {
    queue: 'gateways',
    callback: (_e, msg) => {
      let request: { op?: unknown; userId?: unknown; ttlMs?: unknown };
      try {
        request = decode(msg.data) as typeof request;
      } catch {
        msg.respond(encode({ error: commandError('invalid_request', 'malformed admin request') }));
        return;
      }
      if (request?.op !== 'mint') {
        msg.respond(encode({ error: commandError('invalid_request', 'unknown admin op') }));
        return;
      }
      const ttlMs = request.ttlMs ?? undefined;
      if (!isUserId(request.userId) || (ttlMs !== undefined && (!Number.isSafeInteger(ttlMs) || (ttlMs as number) < 1 || (ttlMs as number) > MINT_TTL_MAX_MS))) {
        msg.respond(encode({ error: commandError('invalid_request', `userId: 1..4294967295; ttlMs: 1..${MINT_TTL_MAX_MS}`) }));
        return;
      }
      logger.info({ userId: request.userId, ttlMs }, 'token minted for an operator');
      msg.respond(encode({ userId: request.userId, ...tokens.mint(request.userId, ttlMs as number | undefined) }));
    },
  });
  return [status, admin];
}
