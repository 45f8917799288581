import type { Primary } from './primary.js';
import type { ShardLease } from '../replica/lease.js';
import type { Clock } from '../shard/ports.js';

/** The engine a step-down names (an engine id, checked by its parser), or why it cannot be the target. */
export function stepDownTarget(to: string, me: string): string | { error: string } {
  if (to === me) return { error: 'to: the engine id of a replica of this shard' };
  return to;
}

/**
 * The work of stepping down: intake closed, everything queued decided and
 * acknowledged, then the lease written naming `to` with no live writer
 * (which only `to` reads as expired, so it takes over at once). Returns how
 * long it took, or null when interrupted (an append failed, or the role
 * ended): the lease is then untouched.
 */
export async function handOver(o: {
  primary: Primary;
  lease: ShardLease;
  to: string;
  clock: Clock;
  current: () => boolean;
}): Promise<number | null> {
  const started = o.clock.now();
  o.primary.closeIntake();
  await o.primary.drain();
  if (!o.current() || !o.primary.stillDeciding) return null;
  // Nothing may be appended once the lease names the successor: no admin command, no timer close.
  o.primary.stopDeciding();
  await o.lease.handOver(o.to);
  return o.clock.now() - started;
}
