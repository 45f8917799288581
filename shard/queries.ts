import { reply } from '../engine/answers.js';
import { commandError, decode, WIRE_LIMITS } from '../protocol/index.js';
import type { ShardCopy } from './copy.js';
import type { BusRequest } from './ports.js';

/**
 * Queries about a copy (`auction.node.<engineId>.<shard>` for any copy;
 * `auction.ctl.<shard>` for the primary): status, one auction's state, some
 * auctions' states (primary only: answered once durable), the state hash.
 */
export function answerQuery(msg: BusRequest, copy: ShardCopy): void {
  let request: { op?: unknown; auctionId?: unknown; auctionIds?: unknown };
  try {
    request = decode(msg.data) as typeof request;
  } catch {
    reply(msg, { error: commandError('invalid_request', 'malformed control request') });
    return;
  }
  const { core } = copy.copyState;
  switch (request?.op) {
    case 'status':
      reply(msg, copy.statusReport());
      return;
    case 'state':
      reply(msg, { auction: typeof request.auctionId === 'number' && core ? core.auctionState(request.auctionId) : null });
      return;
    case 'states': {
      const ids = request.auctionIds;
      if (!Array.isArray(ids) || ids.length > WIRE_LIMITS.requestCommandsMax) {
        reply(msg, { error: commandError('invalid_request', `auctionIds: an array of at most ${WIRE_LIMITS.requestCommandsMax} ids`) });
        return;
      }
      const primary = copy.primary;
      if (!primary) reply(msg, { error: commandError('unavailable', `shard ${copy.roleName}`) });
      else primary.answerStates(msg, ids);
      return;
    }
    case 'hash':
      reply(msg, { lastSeq: core?.lastSeq ?? 0, durableSeq: copy.copyState.durableSeq, stateHash: copy.stateHash() });
      return;
    default:
      reply(msg, { error: commandError('invalid_request', 'unknown control op') });
  }
}
