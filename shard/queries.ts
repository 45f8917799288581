import { commandError } from '../protocol/index.js';
import {
  answer,
  answerError,
  controlParsers,
  readOperation,
  type ControlOperations,
  type ReplyOf,
} from '../protocol/operations.js';
import type { CopyRole, ShardCopyStatus } from '../protocol/cluster.js';
import type { AuctionCore } from '../engine/core/index.js';
import type { BusRequest } from './ports.js';

/** What the queries read of a copy (ShardCopy; an interface here, so copy.ts and this file do not import each other). */
export interface QueriedCopy {
  readonly copyState: { readonly core: AuctionCore | null; readonly durableSeq: number };
  /** The serving role's pipeline, which answers `states` once durable; null in any other role. */
  readonly primary: { answerStates(msg: BusRequest, auctionIds: number[]): void } | null;
  readonly roleName: CopyRole;
  statusReport(): ShardCopyStatus;
  stateHash(): string;
}

/**
 * Queries about a copy (`auction.node.<engineId>.<shard>` for any copy;
 * `auction.ctl.<shard>` for the primary): status, one auction's state, some
 * auctions' states (primary only: answered once durable), the state hash.
 */
export function answerQuery(msg: BusRequest, copy: QueriedCopy): void {
  const request = readOperation<ControlOperations>(msg, controlParsers, 'control');
  if (!request) return;
  const { core } = copy.copyState;
  switch (request.op) {
    case 'status':
      answer(msg, copy.statusReport() satisfies ReplyOf<ControlOperations, 'status'>);
      return;
    case 'state':
      answer(msg, { auction: core ? core.auctionState(request.auctionId) : null } satisfies ReplyOf<
        ControlOperations,
        'state'
      >);
      return;
    case 'states': {
      const primary = copy.primary;
      if (!primary) answerError(msg, commandError('unavailable', `shard ${copy.roleName}`));
      else primary.answerStates(msg, request.auctionIds);
      return;
    }
    case 'hash':
      answer(msg, {
        lastSeq: core?.lastSeq ?? 0,
        durableSeq: copy.copyState.durableSeq,
        stateHash: copy.stateHash(),
      } satisfies ReplyOf<ControlOperations, 'hash'>);
      return;
  }
}
