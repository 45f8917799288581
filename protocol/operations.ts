import type { AuctionState } from './commands.js';
import {
  commandError,
  decode,
  encode,
  WIRE_LIMITS,
  type CommandError,
  type CommandReply,
  type CommandResult,
} from './wire.js';
import { isId, isUserId } from './ids.js';
import type { LeaseValue, ShardCopyStatus } from './cluster.js';
import type { Auction, AuctionPage, BidPage } from './public.js';

/**
 * Every operation processes ask each other for besides commands, with its
 * request and its reply, one table per kind of subject (the model is nats.js's
 * jsapi_types.ts). A server reads a request with `readOperation`, which
 * checks the shape of each op it serves and answers `invalid_request` itself;
 * a client names its reply type from the same table (`ReplyOf`). Every reply
 * may instead be `{error}` (`ErrorReply`).
 */

/** An operation: what its request carries and what its reply holds. */
type Operation<Request, Reply> = { request: Request; reply: Reply };
/** A table of operations by name; each request carries its name as `op`. */
export type Operations = Record<string, Operation<{ op: string }, unknown>>;

export type RequestOf<Ops extends Operations> = Ops[keyof Ops]['request'];
/** The request of one op. */
export type RequestFor<Ops extends Operations, Op extends keyof Ops> = Ops[Op]['request'];
export type ReplyOf<Ops extends Operations, Op extends keyof Ops> = Ops[Op]['reply'];
/** What any operation answers when it cannot do what was asked. */
export type ErrorReply = { error: CommandError };

export type StateHash = { lastSeq: number; durableSeq: number; stateHash: string };

/**
 * Queries about a shard: `subjects.control(shard)` reaches its primary,
 * `subjects.nodeControl(shard, engineId)` one engine's copy, primary or not.
 */
export type ControlOperations = {
  status: Operation<{ op: 'status' }, ShardCopyStatus>;
  /** One auction's state as this copy knows it (no durability wait). */
  state: Operation<{ op: 'state'; auctionId: number }, { auction: AuctionState | null }>;
  /** Some auctions' states, answered by the primary once what it has decided about them is durable. */
  states: Operation<{ op: 'states'; auctionIds: number[] }, { states: (AuctionState | null)[]; seq: number }>;
  hash: Operation<{ op: 'hash' }, StateHash>;
};

export type SnapshotReply = {
  snapshot: { at: number; streamSeq: number; lastSeq: number };
  engineId: string;
  /** From taking the image to the file durable. */
  ms: number;
  /** The longest the shard's event loop was held for it at once (the image is copied in steps while it decides). */
  stallMs: number;
};
export type StepDownReply = { from: string; to: string; streamSeq: number; lastSeq: number; ms: number };

/**
 * Operator actions on a shard's primary (`adminSubjects.engine(shard)`). The
 * subject also takes commands, `{commands: [...]}` as on the command subject
 * (close and cancel only here), answered with a `CommandReply`.
 */
export type EngineAdminOperations = {
  snapshot: Operation<{ op: 'snapshot' }, SnapshotReply>;
  /** A clean hand-over to the replica `to`. */
  'step-down': Operation<{ op: 'step-down'; to: string }, StepDownReply>;
};
export type EngineAdminRequest = RequestOf<EngineAdminOperations> | { commands: unknown[] };
export type { CommandReply, CommandResult };

/** The search of `GET /v1/auctions` on one shard; the audit checks the values (a sort or status it lacks, a bad cursor). */
export type SearchRequest = {
  op: 'search';
  q?: string;
  /** scheduled, open, closed or cancelled. */
  status?: string;
  sellerId?: number;
  /** ending_soon (the default), newest or price. */
  sort?: 'ending_soon' | 'newest' | 'price';
  limit?: number;
  cursor?: string;
};
export type AuditPosition = {
  streamSeq: number;
  eventSeq: number;
  eventCount: number;
  lagMs: number;
  lagMsP50: number;
  lagMsP99: number;
  lagSamples: number;
};

/** The read model of a shard (`auditSubject(shard)`), answered from its SQLite file. */
export type AuditQueryOperations = {
  auction: Operation<{ op: 'auction'; auctionId: number }, { auction: Auction | null }>;
  /** A bid history page; the maxima only of `viewerId`'s own bids. */
  bids: Operation<{ op: 'bids'; auctionId: number; after?: number; limit?: number; viewerId?: number }, BidPage>;
  search: Operation<SearchRequest, AuctionPage>;
  /** How far the file is; `resetLag` starts the lag percentiles afresh (the bench). */
  position: Operation<{ op: 'position'; resetLag?: boolean }, AuditPosition>;
};

export type VerifyResult = {
  shard: number;
  ok: boolean;
  /** Stream messages the file has applied, and the stream's last. */
  fileStreamSeq: number;
  streamLastSeq: number;
  events: number;
  lastSeq: number;
  runningHash: string;
  /** The first difference, named: "bids seq 42: price_after is 500 in the file, 550 from the stream". */
  difference?: string;
};
/** One event of an auction as operators see it (bidders' maxima included); a bid, or a lifecycle event. */
export type AuctionEvent = {
  seq: number;
  /** `bid`, or the lifecycle event's type (created, opened, closed, cancelled...). */
  type: string;
  status?: string;
  reason?: string;
  price?: number;
  bidderId?: number;
  bidId?: number;
  maxBid?: number;
  leading?: boolean;
  winnerId?: number;
  detail?: string;
  at: number;
};

/** Operator actions on a shard's audit (`adminSubjects.audit(shard)`). */
export type AuditAdminOperations = {
  /** The file proved against its stream (one run at a time per shard). */
  verify: Operation<{ op: 'verify' }, VerifyResult>;
  /** An auction's newest events, newest first. */
  events: Operation<{ op: 'events'; auctionId: number; limit?: number }, { events: AuctionEvent[] }>;
};

/** The longest token an operator may mint: 30 days. */
export const MINT_TTL_MAX_MS = 30 * 24 * 3_600_000;
/** Operator actions any one gateway answers (`adminSubjects.gateway`). */
export type GatewayAdminOperations = {
  mint: Operation<{ op: 'mint'; userId: number; ttlMs?: number }, { userId: number; token: string; expiresAt: number }>;
};

/** The leases as `auctionctl status` reads them. */
export type { LeaseValue };

// --- reading a request ----------------------------------------------------------------------------

/** A request as both NATS and the simulator's bus deliver it. */
export interface OperationMessage {
  readonly data: Uint8Array;
  /** Where the answer goes; a request without one is not answered. */
  readonly reply?: string;
  respond(data: Uint8Array): unknown;
}

/**
 * For each op a server serves: the typed request from the decoded object,
 * or what is wrong with it (answered as `invalid_request`).
 */
export type OperationParsers<Ops extends Operations> = {
  [Op in keyof Ops]: (raw: Record<string, unknown>) => Ops[Op]['request'] | string;
};

/**
 * The request in `msg` if it is one of `parsers`' ops with a valid shape;
 * otherwise answers `invalid_request` (`what` names the subject in the
 * message: "malformed control request", "unknown control op") and returns null.
 */
export function readOperation<Ops extends Operations>(
  msg: OperationMessage,
  parsers: OperationParsers<Ops>,
  what: string,
): RequestOf<Ops> | null {
  return parseOperation(msg, decodeRequest(msg), parsers, what);
}

/** A request's decoded body; undefined when it is not msgpack (parseOperation answers that). */
export function decodeRequest(msg: OperationMessage): unknown {
  try {
    return decode(msg.data);
  } catch {
    return undefined;
  }
}

/** `readOperation` of a body already decoded (`decodeRequest`), for a subject that also takes other requests. */
export function parseOperation<Ops extends Operations>(
  msg: OperationMessage,
  raw: unknown,
  parsers: OperationParsers<Ops>,
  what: string,
): RequestOf<Ops> | null {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    answerError(msg, commandError('invalid_request', `malformed ${what} request`));
    return null;
  }
  const op = (raw as { op?: unknown }).op;
  const parse = typeof op === 'string' && Object.hasOwn(parsers, op) ? parsers[op as keyof Ops] : undefined;
  if (!parse) {
    answerError(msg, commandError('invalid_request', `unknown ${what} op`));
    return null;
  }
  const request = parse(raw as Record<string, unknown>);
  if (typeof request === 'string') {
    answerError(msg, commandError('invalid_request', request));
    return null;
  }
  return request;
}

/** Answers an operation (or a command request) with its reply. */
export function answer(msg: OperationMessage, reply: unknown): void {
  if (msg.reply) msg.respond(encode(reply));
}

export function answerError(msg: OperationMessage, error: CommandError): void {
  answer(msg, { error } satisfies ErrorReply);
}

// --- checks the parsers share ---------------------------------------------------------------------

/** An optional field: absent (undefined or null) or valid. */
const optional = <T>(value: unknown, valid: (v: unknown) => v is T): value is T | undefined | null =>
  value === undefined || value === null || valid(value);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const ENGINE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Engine ids appear in subjects: letters, digits, '-' and '_' only. */
export const isEngineId = (value: unknown): value is string => typeof value === 'string' && ENGINE_ID.test(value);

export const controlParsers: OperationParsers<ControlOperations> = {
  status: () => ({ op: 'status' }),
  state: (raw) => (isId(raw.auctionId) ? { op: 'state', auctionId: raw.auctionId } : 'auctionId: an auction id'),
  states: (raw) =>
    Array.isArray(raw.auctionIds) &&
    raw.auctionIds.length <= WIRE_LIMITS.requestCommandsMax &&
    raw.auctionIds.every(isId)
      ? { op: 'states', auctionIds: raw.auctionIds }
      : `auctionIds: an array of at most ${WIRE_LIMITS.requestCommandsMax} ids`,
  hash: () => ({ op: 'hash' }),
};

export const engineAdminParsers: OperationParsers<EngineAdminOperations> = {
  snapshot: () => ({ op: 'snapshot' }),
  'step-down': (raw) =>
    isEngineId(raw.to) ? { op: 'step-down', to: raw.to } : 'to: the engine id of a replica of this shard',
};

/**
 * The audit's queries. Paging values (after, limit, cursor, sort, status)
 * are checked by the queries themselves, whose messages name the bound.
 */
export const auditQueryParsers: OperationParsers<AuditQueryOperations> = {
  auction: (raw) => (isId(raw.auctionId) ? { op: 'auction', auctionId: raw.auctionId } : 'auctionId: an auction id'),
  bids: (raw) =>
    isId(raw.auctionId) && optional(raw.viewerId, isCount)
      ? {
          op: 'bids',
          auctionId: raw.auctionId,
          after: raw.after as number | undefined,
          limit: raw.limit as number | undefined,
          viewerId: raw.viewerId ?? undefined,
        }
      : 'auctionId: an auction id; viewerId: a user id',
  search: (raw) => {
    const texts = ['q', 'status', 'sort', 'cursor'] as const;
    const wrongText = texts.find((field) => !optional(raw[field], (v): v is string => typeof v === 'string'));
    if (wrongText) return `${wrongText} must be a string`;
    if (!optional(raw.sellerId, isUserId)) return 'sellerId: a user id';
    if (!optional(raw.limit, isCount)) return 'limit must be a number';
    const field = <K extends keyof SearchRequest>(key: K) => (raw[key] ?? undefined) as SearchRequest[K];
    return {
      op: 'search',
      q: field('q'),
      status: field('status'),
      sellerId: field('sellerId'),
      sort: field('sort'),
      limit: field('limit'),
      cursor: field('cursor'),
    };
  },
  position: (raw) => ({ op: 'position', resetLag: raw.resetLag === true }),
};

export const auditAdminParsers: OperationParsers<AuditAdminOperations> = {
  verify: () => ({ op: 'verify' }),
  events: (raw) =>
    isId(raw.auctionId)
      ? { op: 'events', auctionId: raw.auctionId, limit: raw.limit as number | undefined }
      : 'auctionId: an auction id',
};

export const gatewayAdminParsers: OperationParsers<GatewayAdminOperations> = {
  mint: (raw) =>
    isUserId(raw.userId) &&
    optional(
      raw.ttlMs,
      (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= MINT_TTL_MAX_MS,
    )
      ? { op: 'mint', userId: raw.userId, ttlMs: raw.ttlMs ?? undefined }
      : `userId: 1..4294967295; ttlMs: 1..${MINT_TTL_MAX_MS}`,
};
