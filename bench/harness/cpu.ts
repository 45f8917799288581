import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * The CPU a bid costs each process: user + system time from
 * /proc/<pid>/stat (every thread of the process), read at the start and the
 * end of a measured window and divided by the bids decided in it.
 */

/** Clock ticks per second of /proc's times (100 on Linux as built almost everywhere). */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** The CPU time a process has used so far, in microseconds; null once it is gone. */
export function processCpuUs(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (the command) is in parentheses and may hold spaces: count from after its ')'. The rest
  // starts at field 3 (state); utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS;
}

/**
 * The processes whose CPU is counted, by the name the report gives them: a
 * pid, or the pids of a server made of many processes (Postgres), summed.
 * A group is read afresh at every snapshot, so a process of it that exits
 * inside a window takes its CPU with it (Postgres's pooled backends stay).
 */
export type MeteredProcesses = Record<string, number | number[] | undefined>;

/** The pids of every process whose command name (/proc/<pid>/comm) is `name`. */
export function pidsNamed(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** CPU microseconds per decided bid, by process; `system` is every process but the load generator's. */
export type CpuPerBid = Record<string, number | null> & { system: number | null };

/** Where a window starts: each process's CPU time then. */
export type CpuSnapshot = Record<string, number | null>;

/** The CPU time of a group's processes alive now, summed; null when none is. */
function groupCpuUs(pids: number[]): number | null {
  const times = pids.map(processCpuUs).filter((us): us is number => us !== null);
  return times.length ? times.reduce((a, b) => a + b, 0) : null;
}

export function cpuSnapshot(processes: MeteredProcesses): CpuSnapshot {
  return Object.fromEntries(
    Object.entries(processes).map(([name, pid]) => [
      name,
      pid === undefined ? null : Array.isArray(pid) ? groupCpuUs(pid) : processCpuUs(pid),
    ]),
  );
}

/**
 * The CPU each process spent between two snapshots per decided bid (one
 * decimal). A process that was not running at either end has null, and
 * `system` is null when any of its parts is.
 */
export function cpuPerBid(before: CpuSnapshot, after: CpuSnapshot, decided: number, generator: string): CpuPerBid {
  const per: Record<string, number | null> = {};
  for (const [name, start] of Object.entries(before)) {
    const end = after[name];
    per[name] =
      start === null || end === null || end === undefined || decided <= 0
        ? null
        : Math.round(((end - start) / decided) * 10) / 10;
  }
  const parts = Object.entries(per).filter(([name]) => name !== generator);
  const system = parts.some(([, us]) => us === null)
    ? null
    : Math.round(parts.reduce((sum, [, us]) => sum + us!, 0) * 10) / 10;
  return { ...per, system };
}
