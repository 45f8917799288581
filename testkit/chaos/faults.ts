import type { Random } from '../simulator/random.js';
import type { ChaosSystem, Target, TargetKind } from './system.js';

/**
 * The faults of a chaos run, drawn from its seed before it starts:
 * - `kill`: SIGKILL, then the same process started again after `durationMs`
 *   (same data directory and ports: a crash and a restart);
 * - `pause`: SIGSTOP, SIGCONT after `durationMs` (a stalled VM, a long GC);
 * - `stall`: the process's links to NATS stop forwarding one direction or
 *   both for `durationMs` (the peers see silence, not a closed socket);
 * - `cut`: the links are severed and new connections refused for
 *   `durationMs` (the peers see the link fail).
 * One fault at a time, sometimes two that overlap; never both gateways or
 * two NATS nodes at once (either is more than the loss of one process, which
 * is all the system promises to ride through).
 */
export type FaultKind = 'kill' | 'pause' | 'stall' | 'cut';
export type Direction = 'up' | 'down' | 'both';

export type Fault = {
  /** Planned start, ms after the run's start. */
  at: number;
  target: string;
  targetKind: TargetKind;
  kind: FaultKind;
  durationMs: number;
  /** For a stall: which way bytes stop (up: from the process to NATS). */
  direction?: Direction;
};

/** A fault as it happened: when it began and when its target was whole again (ms since the epoch). */
export type FaultRecord = Fault & { startedAt: number; endedAt: number; group: number };

export type PlanOptions = {
  durationMs: number;
  targets: { name: string; kind: TargetKind }[];
  /** Quiet time before the first fault (clients connected, auctions open). */
  warmupMs?: number;
  /** Quiet time after the last fault ends, before the run stops. */
  tailMs?: number;
};

const FAULT_MS = { min: 500, max: 4_000 };
const RESTART_AFTER_MS = { min: 300, max: 3_000 };
/** Quiet time between fault groups, so that each outage is attributed to the fault that caused it. */
const GAP_MS = { min: 3_000, max: 7_000 };
/**
 * After a group that hit a NATS node: a stream leader lost with it is
 * replaced only after nats-server's election timeout (4-9 s from the loss,
 * server/raft.go), and clients then wait up to ~1.5 s more. With the short
 * gap that outage ran into the next group and was charged to it (make chaos
 * SEED=203: a paired engine and audit kill 4.9 s, 6.5 s after a NATS kill).
 */
const GAP_AFTER_NATS_MS = { min: 10_000, max: 12_000 };
const PAIR_CHANCE = 0.3;

const KINDS: Record<TargetKind, readonly FaultKind[]> = {
  engine: ['kill', 'pause', 'stall', 'cut'],
  replica: ['kill', 'pause', 'stall', 'cut'],
  gateway: ['kill', 'pause', 'stall', 'cut'],
  audit: ['kill', 'pause', 'stall', 'cut'],
  nats: ['kill', 'pause'],
};

/** Two faults may overlap unless they would take down both gateways or two NATS nodes (or hit one target twice). */
function compatible(a: { name: string; kind: TargetKind }, b: { name: string; kind: TargetKind }): boolean {
  if (a.name === b.name) return false;
  return !(a.kind === b.kind && (a.kind === 'nats' || a.kind === 'gateway'));
}

function draw(random: Random, target: { name: string; kind: TargetKind }, at: number): Fault {
  const kind = random.pick(KINDS[target.kind]);
  const range = kind === 'kill' ? RESTART_AFTER_MS : FAULT_MS;
  const fault: Fault = {
    at,
    target: target.name,
    targetKind: target.kind,
    kind,
    durationMs: random.int(range.min, range.max),
  };
  if (kind === 'stall') fault.direction = random.pick(['up', 'down', 'both'] as const);
  return fault;
}

/** The run's faults in start order, each group (one fault, or two overlapping) followed by a quiet gap. */
export function planFaults(random: Random, options: PlanOptions): Fault[][] {
  const { durationMs, targets } = options;
  const warmupMs = options.warmupMs ?? 5_000;
  const tailMs = options.tailMs ?? 8_000;
  const groups: Fault[][] = [];
  for (let at = warmupMs; ;) {
    const first = draw(random, random.pick(targets), at);
    const group = [first];
    const pair = random.chance(PAIR_CHANCE);
    const partner = random.pick(targets);
    if (
      pair &&
      compatible(
        targets.find((t) => t.name === first.target)!,
        partner,
      )
    )
      group.push(draw(random, partner, at + random.int(0, 1_000)));
    const end = Math.max(...group.map((f) => f.at + f.durationMs));
    // A restart takes a few seconds more than the planned down time; leave room for it before the end.
    if (end + tailMs > durationMs) break;
    groups.push(group);
    const gap = group.some((f) => f.targetKind === 'nats') ? GAP_AFTER_NATS_MS : GAP_MS;
    at = end + random.int(gap.min, gap.max);
  }
  return groups;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Applies one fault to the running system and undoes it; resolves when the target is whole again. */
export async function applyFault(system: ChaosSystem, fault: Fault): Promise<{ startedAt: number; endedAt: number }> {
  const target: Target = system.target(fault.target);
  const startedAt = Date.now();
  switch (fault.kind) {
    case 'kill':
      system.expectExit(target.name);
      await target.process.kill();
      await sleep(fault.durationMs);
      try {
        await system.restart(target);
      } finally {
        system.exitHandled(target.name);
      }
      break;
    case 'pause':
      await target.process.pause();
      await sleep(fault.durationMs);
      await target.process.resume();
      break;
    case 'stall': {
      const directions = fault.direction === 'both' ? (['up', 'down'] as const) : [fault.direction ?? 'up'];
      for (const link of target.links) for (const d of directions) link.hold(d);
      await sleep(fault.durationMs);
      for (const link of target.links) for (const d of directions) link.release(d);
      break;
    }
    case 'cut':
      for (const link of target.links) {
        link.refuse(true);
        link.sever();
      }
      await sleep(fault.durationMs);
      for (const link of target.links) link.refuse(false);
      break;
  }
  return { startedAt, endedAt: Date.now() };
}

/** Runs the planned groups on schedule (relative to `startedAt`) until done or `stopped()`; returns what happened. */
export async function runFaults(
  system: ChaosSystem,
  groups: Fault[][],
  startedAt: number,
  stopped: () => boolean,
  onFault: (record: FaultRecord) => void,
): Promise<FaultRecord[]> {
  const records: FaultRecord[] = [];
  for (const [index, group] of groups.entries()) {
    if (stopped()) break;
    const wait = startedAt + group[0].at - Date.now();
    if (wait > 0) await sleep(wait);
    const done = await Promise.all(
      group.map(async (fault) => {
        const delay = fault.at - group[0].at;
        if (delay > 0) await sleep(delay);
        const times = await applyFault(system, fault);
        const record: FaultRecord = { ...fault, ...times, group: index };
        onFault(record);
        return record;
      }),
    );
    records.push(...done);
  }
  return records;
}
