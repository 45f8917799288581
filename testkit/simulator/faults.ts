import { RESTART_DELAY_MS } from './options.js';
import type { CopySlot, World } from './world.js';

export const FAULT_KINDS = [
  'append-timeouts',
  'read-errors',
  'lease-write-timeouts',
  'consumer-death',
  'pause',
  'kill',
  'step-down',
  'placement-move',
  'stop-during-takeover',
  'lease-bucket-outage',
  'leaders-lost',
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

/**
 * One episode of faults: 1-3 of them, overlapping, each from `random`.
 * Returns when (simulated time) the last of them is over; the shard must
 * serve within the lease TTL plus SERVE_AGAIN_BOUND_MS after that.
 */
export function startEpisode(world: World, kinds: readonly FaultKind[] = FAULT_KINDS): number {
  const random = world.faultRandom;
  const count = random.int(1, 3);
  let endsAt = world.scheduler.now;
  for (let i = 0; i < count; i++) {
    const kind = random.pick(kinds);
    const offsetMs = random.int(0, 800);
    const durationMs = start(world, kind, offsetMs);
    endsAt = Math.max(endsAt, world.scheduler.now + offsetMs + durationMs);
  }
  return endsAt;
}

/** Schedules one fault `offsetMs` from now; returns how long it lasts from its start. */
function start(world: World, kind: FaultKind, offsetMs: number): number {
  const random = world.faultRandom;
  const ttl = world.options.leaseTtlMs;
  const at = (delayMs: number, fn: () => void) => world.scheduler.schedule(null, delayMs, fn);
  const someSlot = () => random.pick(world.slots);
  const leaderOr = (fallback: CopySlot) => world.serving()[0] ?? fallback;
  switch (kind) {
    case 'append-timeouts':
    case 'read-errors':
    case 'lease-write-timeouts': {
      const switchName =
        kind === 'append-timeouts' ? 'appendTimeouts' : kind === 'read-errors' ? 'readErrors' : 'kvTimeouts';
      const durationMs = random.int(200, 1_500);
      const rate = random.int(1, 5) / 10;
      at(offsetMs, () => {
        world.note(`fault: ${kind} at rate ${rate} for ${durationMs} ms`);
        world.faults[switchName] = rate;
      });
      at(offsetMs + durationMs, () => {
        world.faults[switchName] = 0;
      });
      return durationMs;
    }
    case 'lease-bucket-outage': {
      // The bucket's stream electing a leader after a NATS node's loss: no write lands for seconds (4-9 s on
      // nats-server 2.9; shorter here, for the run's length). The log still takes appends.
      const durationMs = random.int(2 * ttl, 6 * ttl);
      at(offsetMs, () => {
        world.note(`fault: the lease bucket takes no writes for ${durationMs} ms`);
        world.faults.kvDown = true;
      });
      at(offsetMs + durationMs, () => {
        world.faults.kvDown = false;
      });
      return durationMs;
    }
    case 'leaders-lost': {
      // A NATS node that led both the shard's log and the lease bucket is lost: neither takes writes until
      // their elections (4-9 s on nats-server 2.9; shorter here), and the log answers no reads.
      const durationMs = random.int(2 * ttl, 6 * ttl);
      at(offsetMs, () => {
        world.note(`fault: the log and the lease bucket take no writes for ${durationMs} ms`);
        world.faults.kvDown = true;
        world.faults.logDown = true;
      });
      at(offsetMs + durationMs, () => {
        world.faults.kvDown = false;
        world.faults.logDown = false;
      });
      return durationMs;
    }
    case 'consumer-death':
      at(offsetMs, () => {
        const slot = someSlot();
        world.note(`fault: consumers of ${slot.name} die`);
        world.log.killConsumers(slot.node);
      });
      return 0;
    case 'pause': {
      const durationMs = random.int(ttl / 2, 3 * ttl);
      const preferLeader = random.chance(0.6);
      at(offsetMs, () => {
        const slot = preferLeader ? leaderOr(someSlot()) : someSlot();
        pause(world, slot, durationMs);
      });
      return durationMs;
    }
    case 'kill': {
      const preferLeader = random.chance(0.6);
      at(offsetMs, () => world.crash(preferLeader ? leaderOr(someSlot()) : someSlot(), 'SIGKILL'));
      return RESTART_DELAY_MS;
    }
    case 'step-down': {
      const pick = random.int(0, world.slots.length - 1);
      at(offsetMs, () => {
        const leader = world.serving()[0];
        const to = world.slots.filter((s) => s !== leader)[pick % (world.slots.length - 1)];
        world.note(`fault: step-down of ${leader?.name ?? 'nobody'} to ${to.name}`);
        void world.stepDown(to).then((outcome) => world.note(`step-down to ${to.name}: ${outcome}`));
      });
      return 1_000;
    }
    case 'placement-move': {
      const awayMs = random.int(100, 1_500);
      at(offsetMs, () => {
        const slot = someSlot();
        moveAway(world, slot, 'placement', awayMs);
      });
      return awayMs;
    }
    case 'stop-during-takeover': {
      // Pause the primary past its lease so that a standby takes over, and stop that standby in the middle of it.
      const durationMs = random.int(ttl + ttl / 2, 3 * ttl);
      const awayMs = random.int(100, 1_000);
      at(offsetMs, () => {
        const leader = world.serving()[0];
        if (!leader) return;
        world.stopWhenTakingOver = { awayMs, until: world.scheduler.now + durationMs };
        pause(world, leader, durationMs);
      });
      return durationMs + awayMs;
    }
  }
}

function pause(world: World, slot: CopySlot, durationMs: number): void {
  const node = slot.node;
  if (node.dead || node.paused) return;
  world.note(`fault: ${slot.name} paused for ${durationMs} ms (SIGSTOP)`);
  world.scheduler.pause(node);
  world.scheduler.schedule(null, durationMs, () => {
    if (node.dead) return;
    world.note(`${slot.name} resumed (SIGCONT)`);
    world.scheduler.resume(node);
  });
}

/** Placement takes the shard from this process and gives it back `awayMs` later. */
export function moveAway(world: World, slot: CopySlot, why: string, awayMs: number): void {
  const node = slot.node;
  if (!slot.copy || node.dead || node.paused || slot.removed) return;
  void world.removeCopy(slot, why);
  const giveBack = () => {
    if (slot.node !== node || node.dead || !slot.removed) return; // restarted meanwhile: its boot started a copy
    if (slot.copy || node.paused) {
      world.scheduler.schedule(null, 100, giveBack); // still stopping
      return;
    }
    world.note(`${slot.name} starts its copy again (placement)`);
    world.startCopy(slot);
  };
  world.scheduler.schedule(null, awayMs, giveBack);
}
