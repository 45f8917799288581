import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import type { JetStreamManager, Republish } from '@nats-io/jetstream';
import type { Logger } from 'pino';

/** One stored message of the followed stream. */
export type FollowedMessage = {
  /** Its stream sequence. */
  seq: number;
  /** The subject it was stored under (not the re-published one). */
  subject: string;
  data: Uint8Array;
  /** Its own headers (e.g. KV-Operation) and JetStream's `Nats-*` ones. */
  headers?: MsgHdrs;
};

export type FollowerStats = {
  delivered: number;
  /** Messages read back by direct gets (lost on the way, or never re-published). */
  refilled: number;
  /** Copies dropped because the buffer behind a gap was full (read back later). */
  dropped: number;
  /** Gaps found (each read back, or reset). */
  gaps: number;
  resets: number;
};

export type StreamFollowerOptions = {
  nc: NatsConnection;
  jsm: JetStreamManager;
  stream: string;
  /**
   * The stream's RePublish, from the definition that created the stream. Its
   * destination is subscribed (wildcard mappings become `*`); its source, the
   * stream's subjects, is the filter of the direct gets that read gaps back.
   */
  republish: Republish;
  /** Every stored message after the start position, in order, once. Must not throw (a throw is logged). */
  onMessage: (message: FollowedMessage) => void;
  /** Messages with sequences in [from, to] were skipped: whatever depends on them must be read afresh. */
  onReset: (skipped: { from: number; to: number }) => void;
  logger: Logger;
  /**
   * Whether gaps are read back by direct gets of sequences (the NATS user
   * needs `$JS.API.DIRECT.GET.<stream>`). False: every gap is a reset.
   */
  refill?: boolean;
  /** A larger gap is reset instead of read back message by message. */
  gapMax?: number;
  /** Copies kept behind a gap at most, and their bytes. */
  bufferMax?: number;
  bufferBytesMax?: number;
  /** How often the stream's last sequence is compared with this follower's. */
  checkEveryMs?: number;
  /** The same for a stream that does not re-publish (made before RePublish was added; see upgradeStream). */
  pollEveryMs?: number;
};

export const FOLLOWER_DEFAULTS = {
  gapMax: 10_000,
  bufferMax: 4_096,
  bufferBytesMax: 32 * 1024 * 1024,
  checkEveryMs: 5_000,
  pollEveryMs: 1_000,
};
/** "Not found" although a later message is stored: a replica a little behind may answer direct gets. Asked again this often. */
export const NOT_FOUND_RETRIES = 3;
export const RETRY_BASE_MS = 20;
export const RETRY_MAX_MS = 2_000;
/** One warning per follower this often at most, however often reads fail. */
export const WARN_EVERY_MS = 10_000;

/** The subscription subject of a republish destination: `notified.{{wildcard(1)}}` -> `notified.*`. */
export function republishSubject(republish: Republish): string {
  return republish.dest.replace(/\{\{\s*wildcard\(\s*\d+\s*\)\s*\}\}|\$\d+/gi, '*');
}
