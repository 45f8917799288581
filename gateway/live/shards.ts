import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { shardOfStream, streamName, subjects } from '../../protocol/index.js';
import { shardFollowSettings } from '../../protocol/shard-stream.js';
import { isStreamNotFound } from '../../protocol/nats-errors.js';
import { ApiError } from '../errors.js';
import { MissCache } from '../miss-cache.js';
import { StreamFollower } from '../stream-follower.js';

const DISCOVER_EVERY_MS = 5_000;

export type ShardStreamsOptions = {
  nc: NatsConnection;
  jsm: JetStreamManager;
  logger: Logger;
  /** Every batch a followed shard stores, in stream order, once. */
  /** Each stream message's bytes (a log batch: protocol/binary/log-format.ts, or msgpack from before it). */
  onBatch: (bytes: Uint8Array) => void;
  /** A shard's follower skipped a gap too large to read back: what is derived from that shard must be read again. */
  onReset: (shard: number) => void;
  /** How long a shard found missing is answered as missing without asking again. */
  missTtlMs: number;
};

type Followed = { ready: Promise<boolean>; follower: StreamFollower | null };

/**
 * Follows every shard's stream without a consumer (gateway/stream-follower.ts:
 * the batches the stream re-publishes to `auction.logged.<n>`, only appended
 * ones, in stream order, gaps read back by direct gets). Shards are found in
 * the stream names every few seconds, and at once when a request names an
 * unknown one; a shard exists iff its stream is among the stream names.
 */
export class ShardStreams {
  private readonly shards = new Map<number, Followed>();
  /** Unknown shards being looked up in the stream names (one question per shard at a time). */
  private readonly lookups = new Map<number, Promise<boolean>>();
  private readonly followed = new Set<number>();
  private readonly missingShards: MissCache<number>;
  private discoverTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: ShardStreamsOptions) {
    this.missingShards = new MissCache(o.missTtlMs, 1_024);
  }

  /** Follows every shard stream that exists now, and any created later. */
  async start(): Promise<void> {
    await this.discover();
    this.discoverTimer = setInterval(
      () =>
        void this.discover().catch((error: unknown) => this.o.logger.warn({ err: error }, 'stream discovery failed')),
      DISCOVER_EVERY_MS,
    );
  }

  stop(): void {
    this.stopped = true;
    if (this.discoverTimer) clearInterval(this.discoverTimer);
    for (const s of this.shards.values()) s.follower?.stop();
  }

  /**
   * Whether the shard has a stream (it is then followed from now on). Unknown
   * shards hold no auctions. Asking costs no stream info or consumer per unknown shard.
   */
  hasShard(shard: number): Promise<boolean> {
    if (this.followed.has(shard)) return Promise.resolve(true);
    if (this.missingShards.has(shard)) return Promise.resolve(false);
    return this.follow(shard);
  }

  /** Shards whose streams this gateway follows (every shard that exists, within a few seconds). */
  knownShards(): number[] {
    return [...this.followed].sort((a, b) => a - b);
  }

  /** Per followed shard, the last stream message applied. */
  positions(): Record<number, number> {
    return Object.fromEntries(
      [...this.shards].flatMap(([shard, s]) => (s.follower ? [[shard, s.follower.lastSeq]] : [])),
    );
  }

  /**
   * Follows a shard's stream from now on (once); false when the shard has no
   * stream (no such auctions). Whether it exists is asked of the stream names
   * (only that shard's), never of its info: the gateway may read the info of
   * the cluster's shards only.
   */
  follow(shard: number): Promise<boolean> {
    if (this.shards.has(shard)) return this.startFollowing(shard);
    if (this.missingShards.has(shard)) return Promise.resolve(false);
    let lookup = this.lookups.get(shard);
    if (!lookup) {
      lookup = (async () => {
        let names: string[];
        try {
          names = await this.o.jsm.streams.names(subjects.log(shard)).next();
        } catch (error) {
          throw new ApiError('unavailable', `cannot look shard ${shard} up`, { cause: error });
        }
        if (!names.includes(streamName(shard))) {
          this.missingShards.add(shard);
          return false;
        }
        return this.startFollowing(shard);
      })().finally(() => this.lookups.delete(shard));
      this.lookups.set(shard, lookup);
    }
    return lookup;
  }

  private async discover(): Promise<void> {
    const names = await this.o.jsm.streams.names(subjects.logWildcard).next();
    for (const name of names) {
      const shard = shardOfStream(name);
      if (shard === null) continue;
      this.missingShards.forget(shard);
      this.startFollowing(shard).catch((error: unknown) =>
        this.o.logger.warn({ err: error, shard }, 'cannot follow a discovered shard yet'),
      );
    }
  }

  /** Starts following a shard stream known to exist, once; resolves when the follower is live (false: stopped, or gone). */
  private startFollowing(shard: number): Promise<boolean> {
    const known = this.shards.get(shard);
    if (known) return known.ready;
    const entry: Followed = { ready: Promise.resolve(false), follower: null };
    entry.ready = (async () => {
      const follower = new StreamFollower({
        nc: this.o.nc,
        jsm: this.o.jsm,
        stream: streamName(shard),
        republish: shardFollowSettings(shard).republish,
        logger: this.o.logger,
        onMessage: (message) => this.o.onBatch(message.data),
        onReset: () => this.o.onReset(shard),
      });
      try {
        await follower.start();
      } catch (error) {
        this.shards.delete(shard);
        if (isStreamNotFound(error)) {
          this.missingShards.add(shard);
          return false;
        }
        throw new ApiError('unavailable', `cannot follow shard ${shard}`, { cause: error });
      }
      if (this.stopped) {
        follower.stop();
        return false;
      }
      entry.follower = follower;
      this.followed.add(shard);
      this.o.logger.info({ shard, from: follower.lastSeq }, 'following shard stream');
      return true;
    })();
    this.shards.set(shard, entry);
    return entry.ready;
  }
}
