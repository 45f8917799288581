import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { answerStatus } from '../protocol/cluster.js';
import { adminSubjects, GATEWAY_QUEUE } from '../protocol/names.js';
import {
  answer,
  gatewayAdminParsers,
  readOperation,
  type GatewayAdminOperations,
  type ReplyOf,
} from '../protocol/operations.js';
import type { Tokens } from './auth.js';

export type GatewayIdentity = {
  id: string;
  startedAt: number;
  listen: () => string;
  connections: () => number;
  subscriptions: () => number;
  unhandledRejections: () => number;
};

/**
 * The gateway's side of operations: it answers `auctionctl status` and mints
 * tokens for `auctionctl token mint` (subject `auction.admin.gateway`, which
 * only the admin NATS user may publish to; any one gateway answers).
 */
export function serveAdmin(nc: NatsConnection, tokens: Tokens, me: GatewayIdentity, logger: Logger): Subscription[] {
  const status = answerStatus(nc, () => ({
    kind: 'gateway',
    id: me.id,
    pid: process.pid,
    startedAt: me.startedAt,
    listen: me.listen(),
    connections: me.connections(),
    subscriptions: me.subscriptions(),
    unhandledRejections: me.unhandledRejections(),
  }));
  const admin = nc.subscribe(adminSubjects.gateway, {
    queue: GATEWAY_QUEUE,
    callback: (_e, msg) => {
      const request = readOperation<GatewayAdminOperations>(msg, gatewayAdminParsers, 'admin');
      if (!request) return;
      logger.info({ userId: request.userId, ttlMs: request.ttlMs }, 'token minted for an operator');
      answer(msg, { userId: request.userId, ...tokens.mint(request.userId, request.ttlMs) } satisfies ReplyOf<
        GatewayAdminOperations,
        'mint'
      >);
    },
  });
  return [status, admin];
}
