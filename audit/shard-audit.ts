import type { Database as DB } from 'better-sqlite3';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import * as hdr from 'hdr-histogram-js';
import {
  AUDIT_CONSUMER,
  auditSubject,
  commandError,
  decodeLog,
  ensureNotificationStream,
  streamName,
  type LogBatch,
} from '../protocol/index.js';
import { GapError, Projection } from './projection.js';
import { answerQueryFailure, isPositionQuery } from './query-answers.js';
import type { ReadPool, ReadRequest } from './read-pool.js';
import { OutboxPublisher } from './outbox.js';
import { verifyShard } from './verify.js';
import { openShardDb, shardFile } from './shard-db.js';
import { adminSubjects } from '../protocol/names.js';
import { PULL_EXPIRES_MS } from '../protocol/shard-stream.js';
import { isTransientNatsFailure } from '../protocol/nats-errors.js';
import {
  answer,
  answerError,
  auditAdminParsers,
  auditQueryParsers,
  decodeRequest,
  parseOperation,
  readOperation,
  type AuditAdminOperations,
  type AuditQueryOperations,
  type ReplyOf,
  type VerifyResult,
} from '../protocol/operations.js';
import { privateDir } from '../service/private-files.js';
import { watchForStalledPull } from './consumer-stall.js';

/**
 * Log batches delivered ahead of one audit process at most, over all its
 * shards (nats.js tops a pull up once a quarter of it has arrived). All its
 * shards share one connection, and nats-server cuts a client owed more than
 * 64 MB as a slow consumer: at 32 batches per shard, eight shards of creation
 * batches (~200 KB each with titles) were owed ~50 MB, and make bench-scale
 * saw the audit cut five times while it caught up with 10M auctions.
 */
const PULL_MESSAGES_PER_PROCESS = 32;
/** Each shard's share of the window when a process follows `shards` shards (at least 4 batches). */
export const pullMessagesFor = (shards: number) => Math.max(4, Math.floor(PULL_MESSAGES_PER_PROCESS / shards));

export type ShardAuditOptions = {
  shard: number;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  dataDir: string;
  logger: Logger;
  /** Stream messages per transaction at most. */
  fetchMax?: number;
  /** Bytes of stream messages per transaction at most: bounds how long one write holds the event loop. */
  chunkBytesMax?: number;
  /**
   * How long what has arrived may wait for more before it is written (a full
   * chunk is written at once). Each commit writes every page it touched to the
   * WAL, whatever the chunk's size: at moderate load a transaction per few
   * batches cost the audit ~40 us per bid (make bench at half its peak).
   */
  commitIntervalMs?: number;
  /** How often a pull that delivers nothing is checked against the stream (consumer-stall.ts). */
  stallCheckMs?: number;
  /** Where the queries are answered: worker threads of the process, off this thread's writes. */
  reads: ReadPool;
  /** Log batches pulled ahead of this shard's file at most (pullMessagesFor; 32 when not given). */
  pullMessagesMax?: number;
  /**
   * Runs an operator's verification of the file (audit/verify-worker.ts: a
   * thread of its own); on this thread when not given, which then writes
   * nothing until it is done.
   */
  verify?: (shard: number, file: string) => Promise<VerifyResult>;
};

/**
 * One shard's audit: a durable pull consumer writing every event into the
 * shard's SQLite file, one transaction per fetched run of messages with the
 * stream position in the same transaction, acknowledged after the commit.
 * It answers history, details and search queries for the shard over NATS.
 */
export class ShardAudit {
  readonly db: DB;
  private readonly projection: Projection;
  private readonly outbox: OutboxPublisher;
  private readonly logger: Logger;
  private running = false;
  private loop: Promise<void> | null = null;
  private messages: ConsumerMessages | null = null;
  private sub: Subscription | null = null;
  private adminSub: Subscription | null = null;
  private verifying: Promise<unknown> | null = null;
  /** Newest batch time applied, and when: the lag gauge. */
  lastApplied = { streamSeq: 0, batchT: 0, at: 0 };
  /** Commit time minus engine time of every message applied (ms), since the last reset. */
  private readonly lag = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 3_600_000,
    numberOfSignificantValueDigits: 2,
  });

  constructor(private readonly o: ShardAuditOptions) {
    privateDir(o.dataDir);
    this.db = openShardDb(shardFile(o.dataDir, o.shard));
    this.projection = new Projection(this.db);
    this.logger = o.logger.child({ shard: o.shard });
    this.outbox = new OutboxPublisher(this.db, o.nc, this.logger);
  }

  async start(): Promise<void> {
    await ensureNotificationStream(this.o.jsm);
    this.outbox.kick(); // whatever a previous run committed but did not publish
    this.sub = this.o.nc.subscribe(auditSubject(this.o.shard), { callback: (_e, msg) => this.onQuery(msg) });
    this.adminSub = this.o.nc.subscribe(adminSubjects.audit(this.o.shard), {
      callback: (_e, msg) => this.onAdmin(msg),
    });
    this.running = true;
    this.loop = this.consume().catch((error: unknown) => {
      this.logger.fatal({ err: error }, 'audit consumer failed; exiting');
      process.exit(70);
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    this.outbox.stop();
    this.sub?.unsubscribe();
    this.adminSub?.unsubscribe();
    await this.verifying?.catch(() => undefined);
    await this.messages?.close();
    await this.loop;
    this.db.close();
  }

  private async consume(): Promise<void> {
    const stream = streamName(this.o.shard);
    await this.waitForStream(stream);
    for (let failures = 0; this.running;) {
      try {
        await this.alignConsumer(stream);
        await this.consumeFromPosition(stream);
        failures = 0;
      } catch (error) {
        // A stream or consumer without a leader for a while (a NATS node lost, an election) is waited out;
        // exiting on it left the audit down for good where nothing restarts it (make chaos SEED=103).
        if (!isTransientNatsFailure(error)) throw error;
        failures++;
        this.logger.warn({ err: (error as Error).message, failures }, 'audit consumer failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, Math.min(2_000, 100 * failures)));
      }
    }
  }

  /**
   * Reads in stream order until stopped or until a message arrives out of
   * order; then the caller realigns the consumer with the file and goes on.
   */
  private async consumeFromPosition(stream: string): Promise<void> {
    const consumer = await this.o.js.consumers.get(stream, AUDIT_CONSUMER);
    const fetchMax = this.o.fetchMax ?? 256;
    const apply = this.db.transaction((chunk: { seq: number; batch: LogBatch; raw: Uint8Array }[]) => {
      for (const { seq, batch, raw } of chunk) this.projection.applyBatch(seq, batch, raw);
      this.projection.flush();
    });
    const chunkBytesMax = this.o.chunkBytesMax ?? 1 << 20;
    // A bounded pull window, counted in messages: queries share the connection and must not queue behind a
    // backlog of megabytes (a log batch is at most batch-events-max records, ~330 KB at 4,096). Not max_bytes:
    // nats.js ends a byte-limited pull with a 409 when the next message does not fit what is left of it, and
    // when that arrives with nothing buffered it waits for two missed idle heartbeats (30 s) before pulling
    // again; make bench saw the audit stand still through whole steps (test/audit/pull-window.test.ts).
    const messages = await consumer.consume({
      max_messages: this.o.pullMessagesMax ?? PULL_MESSAGES_PER_PROCESS,
      expires: PULL_EXPIRES_MS,
    });
    this.messages = messages;
    void this.logConsumerStatus(messages);
    let delivered = 0;
    const stopWatching = watchForStalledPull({
      everyMs: this.o.stallCheckMs,
      delivered: () => delivered,
      behind: async () => {
        const info = await this.o.jsm.streams.info(stream).catch(() => null);
        return info ? info.state.last_seq - this.projection.position().streamSeq : null;
      },
      onStall: (behind, quietMs) => {
        this.logger.warn(
          { behind, quietMs },
          'audit consumer delivers nothing while the stream is ahead; recreating it',
        );
        void messages.close();
      },
    });
    // Whatever has arrived within commitIntervalMs (at most fetchMax messages or
    // chunkBytesMax bytes) is written in one transaction, then acknowledged;
    // after a full chunk the loop yields so queries and the client's heartbeats
    // are served even while catching up a backlog.
    const commitIntervalMs = this.o.commitIntervalMs ?? 20;
    let buffer: JsMsg[] = [];
    let bufferedBytes = 0;
    let flushTimer: NodeJS.Timeout | null = null;
    let gap = false;
    const flush = () => {
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
      const chunk = buffer;
      buffer = [];
      bufferedBytes = 0;
      if (chunk.length === 0 || gap) return;
      const decoded = chunk.map((m) => ({ seq: m.seq, batch: decodeLog(m.data), raw: m.data }));
      try {
        apply(decoded);
      } catch (error) {
        if (error instanceof GapError) {
          // The transaction rolled back; nothing of the chunk is applied or acknowledged.
          this.logger.warn({ err: error.message }, 'out-of-order delivery; realigning the consumer with the file');
          gap = true;
          void messages.close();
          return;
        }
        this.logger.fatal({ err: error, streamSeq: chunk[0].seq }, 'audit write failed; exiting');
        process.exit(70);
      }
      // Acknowledge only after the commit: a crash in between means a harmless redelivery.
      const last = chunk[chunk.length - 1];
      last.ack();
      const now = Date.now();
      for (const { batch } of decoded) this.lag.recordValue(Math.min(3_600_000, Math.max(1, now - batch.t)));
      this.lastApplied = { streamSeq: last.seq, batchT: decoded[decoded.length - 1].batch.t, at: now };
      this.outbox.kick();
    };
    try {
      for await (const message of messages) {
        delivered++;
        buffer.push(message);
        bufferedBytes += message.data.length;
        if (buffer.length >= fetchMax || bufferedBytes >= chunkBytesMax) {
          flush();
          await new Promise((resolve) => setImmediate(resolve));
        } else if (!flushTimer) {
          flushTimer = setTimeout(flush, commitIntervalMs);
        }
        if (!this.running || gap) break;
      }
    } finally {
      stopWatching();
    }
    flush();
  }

  /** What nats.js notices about the pull (missed heartbeats, a consumer not found, a reset): rare, and the trail of a stall. */
  private async logConsumerStatus(messages: ConsumerMessages): Promise<void> {
    for await (const s of messages.status()) {
      // The routine: a pull asked, a heartbeat, a pull that expired (408) with messages left.
      if (
        s.type === 'next' ||
        s.type === 'heartbeat' ||
        s.type === 'discard' ||
        (s.type === 'debug' && s.code === 408)
      ) {
        this.logger.debug({ consumerStatus: s }, 'audit consumer');
        continue;
      }
      this.logger.warn({ consumerStatus: s }, 'audit consumer');
    }
  }

  private async waitForStream(stream: string): Promise<void> {
    for (let attempt = 1; this.running; attempt++) {
      try {
        await this.o.jsm.streams.info(stream);
        return;
      } catch (error) {
        if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound)) throw error;
        // Its engine creates it on a server without users; under service users only the admin does (auctionctl cluster init).
        if (attempt === 1)
          this.logger.info(
            { stream },
            'waiting for the shard stream (created by its engine, or provisioned by the admin)',
          );
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /**
   * The file, not the consumer, knows what has been written: the durable
   * consumer is (re)created to start right after the file's position. Reusing
   * it as it was would resume after its acknowledged messages but leave the
   * dead process's unacknowledged ones to a redelivery much later, out of
   * order; and a file restored from a backup would be behind it.
   */
  private async alignConsumer(stream: string): Promise<void> {
    const position = this.projection.position();
    try {
      await this.o.jsm.consumers.delete(stream, AUDIT_CONSUMER);
    } catch (error) {
      if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)) throw error;
    }
    await this.o.jsm.consumers.add(stream, {
      durable_name: AUDIT_CONSUMER,
      ack_policy: AckPolicy.All,
      deliver_policy: position.streamSeq === 0 ? DeliverPolicy.All : DeliverPolicy.StartSequence,
      ...(position.streamSeq === 0 ? {} : { opt_start_seq: position.streamSeq + 1 }),
      max_ack_pending: 10_000,
      ack_wait: 30_000_000_000,
    });
  }

  /** Where this shard's file is, for `auctionctl status`. */
  statusReport() {
    const position = this.projection.position();
    return {
      shard: this.o.shard,
      streamSeq: position.streamSeq,
      eventSeq: position.eventSeq,
      eventCount: position.eventCount,
      lagMs: this.lastApplied.at ? this.lastApplied.at - this.lastApplied.batchT : 0,
    };
  }

  /** `verify` (auctionctl audit verify): the file against its stream, one run at a time; `events` (auction show). */
  private onAdmin(msg: Msg): void {
    const request = readOperation<AuditAdminOperations>(msg, auditAdminParsers, 'admin');
    if (!request) return;
    if (request.op === 'events') {
      // Operators only: bidders' maxima are in it.
      this.answerRead(msg, request);
      return;
    }
    if (this.verifying) {
      answerError(msg, commandError('rate_limited', 'a verification of this shard is running'));
      return;
    }
    const file = shardFile(this.o.dataDir, this.o.shard);
    this.verifying = (
      this.o.verify
        ? this.o.verify(this.o.shard, file)
        : verifyShard(this.o.nc, this.o.js, this.o.jsm, this.o.shard, file)
    )
      .then((result) => answer(msg, result satisfies ReplyOf<AuditAdminOperations, 'verify'>))
      .catch((error: unknown) =>
        answerError(msg, commandError('unavailable', `verification failed to run: ${(error as Error).message}`)),
      )
      .finally(() => {
        this.verifying = null;
      });
  }

  /**
   * `position` only: the consumer's own state. The shard's other queries are
   * taken from the same subject by the process's read workers, in a queue
   * group (audit/read-worker.ts), and are not this thread's to answer.
   */
  private onQuery(msg: Msg): void {
    const raw = decodeRequest(msg);
    if (!isPositionQuery(raw)) return;
    const request = parseOperation<AuditQueryOperations>(msg, raw, auditQueryParsers, 'query');
    if (request?.op !== 'position') return;
    this.answerQuery(msg, request.op, () => {
      const position = {
        ...this.projection.position(),
        lagMs: this.lastApplied.at ? this.lastApplied.at - this.lastApplied.batchT : 0,
        lagMsP50: this.lag.getValueAtPercentile(50),
        lagMsP99: this.lag.getValueAtPercentile(99),
        lagSamples: this.lag.totalCount,
      } satisfies ReplyOf<AuditQueryOperations, 'position'>;
      if (request.resetLag) this.lag.reset();
      return position;
    });
  }

  /** Answers a read from the pool's workers (audit/query-answers.ts: `overloaded` when every worker is full). */
  private answerRead(msg: Msg, request: ReadRequest): void {
    this.o.reads.read(this.o.shard, request).then(
      (reply) => answer(msg, reply),
      (error: unknown) => this.answerFailure(msg, request.op, error),
    );
  }

  /** Answers with what `run` returns, or as audit/query-answers.ts answers its failure. */
  private answerQuery(msg: Msg, op: string, run: () => unknown): void {
    let reply: unknown;
    try {
      reply = run();
    } catch (error) {
      this.answerFailure(msg, op, error);
      return;
    }
    answer(msg, reply);
  }

  private answerFailure(msg: Msg, op: string, error: unknown): void {
    answerQueryFailure(msg, error, (err) => this.logger.error({ err, op }, 'query failed'));
  }
}
