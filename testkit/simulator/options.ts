/**
 * One simulated run: a shard with two or three copies, a few clients and a
 * schedule of fault episodes, all drawn from the seed.
 */
export type SimOptions = {
  seed: number;
  copies: number;
  clients: number;
  /** Fault episodes; after each the shard must serve again within `leaseTtlMs + SERVE_AGAIN_BOUND_MS`. */
  episodes: number;
  leaseTtlMs: number;
  leaseRenewMs: number;
  appendTimeoutMs: number;
  /** A client waits this long for an answer before it retries. */
  requestTimeoutMs: number;
  /** Small, so that snapshots, bounded batches and full queues happen within a short run. */
  batchEventsMax: number;
  batchesInFlightMax: number;
  pendingCommandsMax: number;
  snapshotEveryEvents: number;
  auctionsMax: number;
};

/**
 * What "serves again" may take beyond the lease TTL once a fault episode
 * ends: a paused copy's events run, a killed copy restarts (supervisor
 * backoff 500 ms), the standby's watchdog notices the lapse (renewMs / 2),
 * catches up, takes the lease and appends its fence, and a client's retry
 * (backoff up to 200 ms) finds it. 2 s covers that with room; real runs show
 * about 1 s (make bench-failover).
 */
export const SERVE_AGAIN_BOUND_MS = 2_000;

/** A killed copy is restarted by its supervisor after this long (ctl/supervisor.ts starts at 0.5 s). */
export const RESTART_DELAY_MS = 500;

export function simOptions(seed: number, overrides: Partial<SimOptions> = {}): SimOptions {
  return {
    seed,
    copies: 2 + (seed % 2),
    clients: 3,
    episodes: 4,
    leaseTtlMs: 1_000,
    leaseRenewMs: 200,
    appendTimeoutMs: 500,
    requestTimeoutMs: 700,
    batchEventsMax: 16,
    batchesInFlightMax: 4,
    pendingCommandsMax: 64,
    snapshotEveryEvents: 100,
    auctionsMax: 64,
    ...overrides,
  };
}
