import type { JetStreamManager } from '@nats-io/jetstream';
import { isStreamNotFound } from './nats-errors.js';
import { createMissing, upgradeStream, type StreamUpgrade } from './provisioning.js';
import { streamName, subjects } from './names.js';

/** What a shard's stream records about the shard itself (its description field). */
export type ShardStreamConfig = { shard: number; auctionsMax: number; idempotencyEntriesMax: number };

/**
 * How long each pull of a consumer reading a shard stream lasts (nats.js
 * `consume({expires})`; its idle heartbeat is half of it). nats.js notices a
 * pull that died with its server (a NATS node killed, a consumer leader
 * moved) only after two missed heartbeats: with its default 30 s pulls that
 * left the audit 30 s behind after every node loss (found by make chaos);
 * with 2 s, 2 s. An idle reader pays one pull request per 2 s.
 */
export const PULL_EXPIRES_MS = 2_000;

/**
 * A shard's capacities when nobody says otherwise: engines take them as their
 * flags' defaults, and provisioning records them in a stream it creates, so
 * an engine started without flags decides with the same capacities.
 */
export const SHARD_DEFAULTS = { auctionsMax: 1 << 20, idempotencyEntriesMax: 1 << 20, streamReplicas: 1 };

/**
 * What followers without consumers need of a shard's stream: direct gets
 * (reads by sequence) and a RePublish of every stored batch to
 * `auction.logged.<n>` (gateway/stream-follower.ts). A rejected append is
 * never stored, so never re-published.
 */
export const shardFollowSettings = (shard: number) => ({
  allow_direct: true as const,
  republish: { src: subjects.log(shard), dest: subjects.logged(shard) },
});

/** A shard stream's configuration: the one definition provisioning and engines (on a server without users) create. */
export function shardStreamConfig(shard: number, recorded: ShardStreamConfig, replicas: number) {
  return {
    name: streamName(shard),
    subjects: [subjects.log(shard)],
    num_replicas: replicas,
    description: JSON.stringify(recorded),
    duplicate_window: 120_000_000_000, // 2 min, in ns
    ...shardFollowSettings(shard),
  };
}

/**
 * Opens the shard's stream and returns the shard configuration it records:
 * whoever creates the stream fixes it (the admin's provisioning,
 * ctl/provision.ts, or on a server without users the first engine), and
 * every engine and replica of the shard adopts it, so they all decide with
 * the same capacities. A missing stream is created only where this NATS
 * user may (NotProvisionedError otherwise); `created` says whether it was.
 */
export async function ensureShardStream(
  jsm: JetStreamManager,
  wanted: ShardStreamConfig,
  replicas: number,
): Promise<{ config: ShardStreamConfig; lastStreamSeq: number; created: boolean }> {
  const stream = streamName(wanted.shard);
  try {
    const info = await jsm.streams.info(stream);
    return {
      config: parseDescription(info.config.description, wanted),
      lastStreamSeq: info.state.last_seq,
      created: false,
    };
  } catch (error) {
    if (!isStreamNotFound(error)) throw error;
  }
  await createMissing(`stream ${stream}`, () => jsm.streams.add(shardStreamConfig(wanted.shard, wanted, replicas)));
  return { config: wanted, lastStreamSeq: 0, created: true };
}

/** Gives the existing stream the settings followers need (the admin's provisioning; protocol/provisioning.ts). */
export async function upgradeShardStream(jsm: JetStreamManager, shard: number): Promise<StreamUpgrade> {
  return upgradeStream(jsm, await jsm.streams.info(streamName(shard)), shardFollowSettings(shard));
}

function parseDescription(description: string | undefined, fallback: ShardStreamConfig): ShardStreamConfig {
  try {
    const parsed = JSON.parse(description ?? '') as Partial<ShardStreamConfig>;
    if (
      Number.isInteger(parsed.auctionsMax) &&
      Number.isInteger(parsed.idempotencyEntriesMax) &&
      parsed.shard === fallback.shard
    ) {
      return parsed as ShardStreamConfig;
    }
  } catch {
    // A stream made by something else: fall through.
  }
  throw new Error(`stream ${streamName(fallback.shard)} exists but does not record a shard configuration`);
}
