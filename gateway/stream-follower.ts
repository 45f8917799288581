import type { Msg, Subscription } from '@nats-io/transport-node';
import { GapBuffer } from './gap-buffer.js';
import {
  FOLLOWER_DEFAULTS,
  NOT_FOUND_RETRIES,
  republishSubject,
  RETRY_BASE_MS,
  RETRY_MAX_MS,
  WARN_EVERY_MS,
  type FollowedMessage,
  type FollowerStats,
  type StreamFollowerOptions,
} from './stream-follower-options.js';

export { republishSubject, type FollowedMessage, type FollowerStats, type StreamFollowerOptions };

/**
 * Follows one JetStream stream without a consumer. The gateway is
 * internet-facing and holds no consumer rights at all: whoever may create a
 * consumer may create a push consumer delivering to any subject, which
 * nats-server never checks against the creator's publish permissions (a
 * push consumer on NOTIFICATIONS delivering into `auction.log.0` appended a
 * foreign message to a shard log, on 2.9.10). So the stream re-publishes
 * every message it stores (JetStream RePublish: a core message on its
 * `republish.dest`, headers `Nats-Stream`, `Nats-Subject`, `Nats-Sequence`,
 * plus the message's own; a rejected or duplicate publish is never stored,
 * so never re-published), and this class subscribes to that, reads what it
 * missed by direct gets (`allow_direct`), and compares its position with the
 * stream's last sequence now and then.
 *
 * Contract: once `start()` resolves with a position P, every message the
 * stream stores after P is passed to `onMessage` exactly once, in stream
 * order, unless a gap too large to read back is reported to `onReset`
 * instead (the caller then reads afresh whatever it derives from the stream).
 *
 * Gaps are found by the sequence: a re-published copy of every stored
 * message is sent (the republish source is every subject of the stream), so
 * consecutive copies carry consecutive `Nats-Sequence`s. `Nats-Last-Sequence`
 * does not do that job: it is the previous message *of the same subject*
 * (ADR-28; seen on 2.9.10 in the KV and notification streams), the previous
 * stream message only in a one-subject stream. A copy is lost when the
 * server drops this connection (slow consumer) or across a reconnect, and
 * RePublish is at-most-once anyway; a gap that nothing follows is found by
 * the periodic check and at each reconnect.
 *
 * Everything is bounded: the buffer of copies waiting behind a gap (by count
 * and bytes; a copy that does not fit is dropped, which only widens the gap
 * it is read back with), the gap read back message by message (`gapMax`),
 * one refill and one check at a time.
 */
export class StreamFollower {
  /** The last sequence delivered (or the start position); -1 until started. */
  private position = -1;
  /** The highest sequence known to be stored. */
  private highest = 0;
  /** Copies that arrived ahead of a gap. */
  private readonly buffer: GapBuffer;
  private refilling = false;
  private checking: Promise<void> | null = null;
  private stopped = false;
  private sub: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private statuses: (AsyncIterable<unknown> & { stop?: () => void }) | null = null;
  private warnedAt = 0;
  private readonly o: Required<Omit<StreamFollowerOptions, 'refill'>> & { refill: boolean };
  readonly stats: FollowerStats = { delivered: 0, refilled: 0, dropped: 0, gaps: 0, resets: 0 };

  constructor(options: StreamFollowerOptions) {
    this.o = { ...FOLLOWER_DEFAULTS, refill: true, ...options };
    this.buffer = new GapBuffer(this.o.bufferMax, this.o.bufferBytesMax);
  }

  /** The last stream sequence delivered (the start position before anything newer arrived). */
  get lastSeq(): number {
    return Math.max(this.position, 0);
  }

  /**
   * Subscribes, then reads the stream's last sequence: the start position,
   * returned. Subscribing first makes every message stored after that
   * position arrive (or show as a gap); copies of older ones are ignored.
   * Rejects when the subscription is refused or the stream cannot be read
   * (`isStreamNotFound` for a missing stream).
   */
  async start(): Promise<number> {
    const refused: { error: Error | null } = { error: null };
    this.sub = this.o.nc.subscribe(republishSubject(this.o.republish), {
      callback: (error, msg) => {
        if (error) refused.error = error;
        else this.receive(msg);
      },
    });
    try {
      // The server answers the flush after refusing the subscription, if it does.
      await this.o.nc.flush();
      if (refused.error) throw refused.error;
      const info = await this.o.jsm.streams.info(this.o.stream);
      if (this.stopped) return this.lastSeq;
      this.position = info.state.last_seq;
      this.highest = Math.max(this.highest, this.position);
      this.buffer.dropUpTo(this.position);
      const republished =
        !!info.config.republish && republishSubject(info.config.republish) === republishSubject(this.o.republish);
      if (!republished) {
        this.o.logger.warn(
          { stream: this.o.stream, republish: info.config.republish ?? null },
          'the stream does not re-publish its messages here: following it by polling (live updates up to a poll late); recreate it, or run auctionctl cluster init on a nats-server that can add RePublish to a stream (2.9 cannot)',
        );
      }
      this.timer = setInterval(() => void this.check(), republished ? this.o.checkEveryMs : this.o.pollEveryMs);
      this.timer.unref();
    } catch (error) {
      this.stop();
      throw error;
    }
    void this.watchReconnects();
    this.advance();
    return this.position;
  }

  /** Stops at once: nothing of it is left running (its timer, subscription and buffer). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.statuses?.stop?.();
    if (this.sub && !this.sub.isClosed()) this.sub.unsubscribe();
    this.buffer.clear();
  }

  /**
   * Compares the stream's last sequence with this follower's: finds a gap
   * after which nothing arrived (the last copies lost), or a stream that was
   * recreated behind it. Runs every `checkEveryMs` and after each reconnect.
   */
  check(): Promise<void> {
    this.checking ??= this.compareWithStream().finally(() => {
      this.checking = null;
    });
    return this.checking;
  }

  private async compareWithStream(): Promise<void> {
    if (this.stopped || this.position < 0) return;
    // The answer describes the stream when it was asked; copies delivered meanwhile may be newer
    // than its last sequence. Only a stream behind what was delivered *before asking* was recreated.
    const asked = this.position;
    try {
      const last = (await this.o.jsm.streams.info(this.o.stream)).state.last_seq;
      if (this.stopped) return;
      if (last < asked) {
        // Deleted and created again (or restored from an older backup): nothing before is valid any more.
        this.o.logger.warn(
          { stream: this.o.stream, last, position: this.position },
          'the stream is behind this follower: it was recreated',
        );
        this.highest = last;
        this.reset({ from: 1, to: last }, last);
        return;
      }
      if (last <= this.highest) return;
      // The copies of the newest messages may still be on their way (the server stores, then
      // re-publishes): one round trip gives them time to arrive before they count as lost.
      await this.o.nc.flush();
      if (this.stopped || last <= this.highest) return;
      this.highest = last;
      this.advance();
    } catch (error) {
      this.warn(error, "cannot read the stream's last sequence");
    }
  }

  private async watchReconnects(): Promise<void> {
    const statuses = this.o.nc.status() as AsyncIterable<{ type: string }> & { stop?: () => void };
    this.statuses = statuses;
    try {
      for await (const status of statuses) {
        if (this.stopped) break;
        // Copies re-published while this connection was away are lost: look at once.
        if (status.type === 'reconnect') void this.check();
      }
    } catch (error) {
      this.warn(error, 'connection status stream ended');
    }
  }

  private receive(msg: Msg): void {
    if (this.stopped) return;
    const headers = msg.headers;
    const seq = Number(headers?.get('Nats-Sequence'));
    // Only the stream's own copies count (only the server may publish here; see protocol/permissions.ts).
    if (!headers || headers.get('Nats-Stream') !== this.o.stream || !Number.isSafeInteger(seq) || seq < 1) return;
    if (seq <= this.position) return; // delivered already, or stored before the start
    if (seq > this.highest) this.highest = seq;
    const message: FollowedMessage = { seq, subject: headers.get('Nats-Subject'), data: msg.data, headers };
    if (seq === this.position + 1 && !this.refilling) {
      this.deliver(message);
      if (this.buffer.size > 0 || this.highest > this.position) this.advance();
      return;
    }
    if (!this.buffer.add(message)) this.stats.dropped++; // `highest` counts it: the refill reads it back
    this.advance();
  }

  /** Delivers what is at hand in order; starts reading back what is missing before the newest known message. */
  private advance(): void {
    if (this.refilling || this.stopped || this.position < 0) return;
    this.drain();
    if (this.position < this.highest) void this.refill();
  }

  /** Delivers the buffered copies that follow the position without a gap. */
  private drain(): void {
    for (let next = this.buffer.take(this.position + 1); next; next = this.buffer.take(this.position + 1))
      this.deliver(next);
  }

  private deliver(message: FollowedMessage): void {
    this.position = message.seq;
    this.stats.delivered++;
    try {
      this.o.onMessage(message);
    } catch (error) {
      this.o.logger.error(
        { err: error, stream: this.o.stream, seq: message.seq },
        'a followed message could not be handled',
      );
    }
  }

  /**
   * Reads the gap back, oldest first, by direct gets, while new copies wait
   * in the buffer; one refill at a time. A gap larger than `gapMax` (or any
   * gap without refills) is reset instead.
   */
  private async refill(): Promise<void> {
    this.refilling = true;
    this.stats.gaps++;
    try {
      while (!this.stopped && this.position < this.highest) {
        this.drain();
        if (this.position >= this.highest) break;
        const missing = this.highest - this.position - this.buffer.size;
        if (!this.o.refill || missing > this.o.gapMax) {
          this.reset({ from: this.position + 1, to: this.highest }, this.highest);
          break;
        }
        const found = await this.readFrom(this.position + 1);
        if (this.stopped || !found) break;
        if ('deleted' in found) {
          // Not stored any more (the stream's limits): the next one, or a copy in the buffer, goes next.
          this.buffer.take(found.deleted);
          this.position = found.deleted;
          continue;
        }
        if (found.seq <= this.position) continue;
        if (found.seq > this.position + 1) {
          // The sequences in between are not stored (deleted by the stream's limits, or never stored
          // for lack of resources). Copies of any of them in the buffer would still go first.
          for (const seq of this.buffer.below(found.seq)) this.deliver(this.buffer.take(seq)!);
        }
        this.buffer.take(found.seq);
        if (found.seq > this.highest) this.highest = found.seq;
        this.stats.refilled++;
        this.deliver(found);
      }
    } finally {
      this.refilling = false;
    }
    this.advance();
  }

  /**
   * The first message stored at or after `seq`, asked again while the server
   * cannot answer; `{ deleted: seq }` when the stream's leader says `seq` is
   * not stored (deleted by the stream's limits), null when stopped.
   * Direct gets are answered by any replica, and one that is behind (a node
   * restarted a moment ago, still catching up) says "not found" for messages
   * it does not have yet: after NOT_FOUND_RETRIES such answers the leader is
   * asked, through the stream API, whether `seq` exists. Taking the replica's
   * word made gateways skip real events for good, and every watcher of those
   * auctions kept an old state (make chaos SEED=102: two auctions' closes).
   */
  private async readFrom(seq: number): Promise<FollowedMessage | { deleted: number } | null> {
    for (let attempt = 0, notFound = 0; !this.stopped; attempt++) {
      try {
        if (notFound < NOT_FOUND_RETRIES) {
          const m = await this.o.jsm.direct.getMessage(this.o.stream, {
            seq,
            next_by_subj: this.o.republish.src || '>',
          });
          if (m) return { seq: m.seq, subject: m.subject, data: m.data, headers: m.header };
          notFound++;
        } else {
          const m = await this.o.jsm.streams.getMessage(this.o.stream, { seq });
          if (!m) return { deleted: seq };
          return { seq: m.seq, subject: m.subject, data: m.data, headers: m.header };
        }
      } catch (error) {
        this.warn(error, 'cannot read a missed message back');
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt)));
    }
    return null;
  }

  /** Skips to `position`, dropping what is buffered, and tells the caller what was skipped. */
  private reset(skipped: { from: number; to: number }, position: number): void {
    this.buffer.clear();
    this.position = position;
    this.stats.resets++;
    this.o.logger.warn({ stream: this.o.stream, ...skipped }, 'skipped a gap in the stream instead of reading it back');
    try {
      this.o.onReset(skipped);
    } catch (error) {
      this.o.logger.error({ err: error, stream: this.o.stream }, 'a stream reset could not be handled');
    }
  }

  private warn(error: unknown, message: string): void {
    if (this.stopped) return;
    const now = Date.now();
    if (now - this.warnedAt < WARN_EVERY_MS) return;
    this.warnedAt = now;
    this.o.logger.warn({ err: error, stream: this.o.stream }, message);
  }
}
