import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { decode, encode, HEARTBEAT_SUBJECT } from '../protocol/index.js';
import { ownerOf } from '../protocol/placement.js';

export type Heartbeat = { engineId: string; shards: number[]; at: number };

export type ClusterOptions = {
  nc: NatsConnection;
  logger: Logger;
  engineId: string;
  shardCount: number;
  heartbeatMs: number;
  /** A peer not heard from for this long is gone. */
  expiryMs: number;
  running: () => number[];
  startShard: (shard: number) => Promise<void>;
  stopShard: (shard: number) => Promise<void>;
};

/**
 * Engines announce themselves (and the shards they serve) every heartbeat;
 * each one places shards by rendezvous hashing over the live engines and
 * reconciles what it serves with that. A hand-over is soft: the new owner
 * starts a shard only once no live peer announces it any more, and the old
 * owner stops it (after its appends in flight and a snapshot) as soon as it
 * sees it is no longer the owner. If both ever write, the stream's expected
 * sequence fences one of them out.
 */
export class EngineCluster {
  private readonly peers = new Map<string, Heartbeat & { seenAt: number }>();
  private sub: Subscription | null = null;
  private timer: NodeJS.Timeout | null = null;
  private work: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(private readonly o: ClusterOptions) {}

  /** Listens for a heartbeat's worth of peers, then serves its share. */
  async start(): Promise<void> {
    this.sub = this.o.nc.subscribe(HEARTBEAT_SUBJECT, {
      callback: (_err, msg) => {
        try {
          const beat = decode(msg.data) as Heartbeat;
          if (typeof beat?.engineId !== 'string' || beat.engineId === this.o.engineId || !Array.isArray(beat.shards))
            return;
          const known = this.peers.has(beat.engineId);
          this.peers.set(beat.engineId, { ...beat, seenAt: Date.now() });
          if (!known) this.o.logger.info({ peer: beat.engineId }, 'engine joined');
        } catch {
          // Not a heartbeat: ignore.
        }
      },
    });
    this.beat();
    await this.o.nc.flush();
    await new Promise((resolve) => setTimeout(resolve, this.o.heartbeatMs * 2));
    await this.reconcile();
    this.timer = setInterval(() => {
      this.beat();
      void this.reconcile();
    }, this.o.heartbeatMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.sub?.unsubscribe();
    await this.work;
  }

  liveEngines(): string[] {
    const now = Date.now();
    for (const [id, peer] of this.peers) {
      if (now - peer.seenAt > this.o.expiryMs) {
        this.peers.delete(id);
        this.o.logger.warn({ peer: id }, 'engine gone (no heartbeat)');
      }
    }
    return [this.o.engineId, ...this.peers.keys()].sort();
  }

  private beat(): void {
    const beat: Heartbeat = { engineId: this.o.engineId, shards: this.o.running(), at: Date.now() };
    this.o.nc.publish(HEARTBEAT_SUBJECT, encode(beat));
  }

  /** One reconciliation at a time; each starts or stops what the placement says. */
  private reconcile(): Promise<void> {
    this.work = this.work
      .then(() => this.reconcileOnce())
      .catch((error: unknown) => this.o.logger.error({ err: error }, 'reconcile failed'));
    return this.work;
  }

  private async reconcileOnce(): Promise<void> {
    if (this.stopped) return;
    const live = this.liveEngines();
    const running = new Set(this.o.running());
    const announced = new Set<number>();
    for (const peer of this.peers.values()) for (const shard of peer.shards) announced.add(shard);
    for (let shard = 0; shard < this.o.shardCount; shard++) {
      const mine = ownerOf(shard, live) === this.o.engineId;
      if (mine && !running.has(shard) && !announced.has(shard)) {
        this.o.logger.info({ shard, live }, 'taking shard');
        await this.o.startShard(shard);
      } else if (!mine && running.has(shard)) {
        this.o.logger.info({ shard, live }, 'handing shard over');
        await this.o.stopShard(shard);
        this.beat();
      }
    }
  }
}
