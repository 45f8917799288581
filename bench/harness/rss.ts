import { readFileSync } from 'node:fs';

/**
 * A process's resident memory (VmRSS of /proc/<pid>/status) in bytes; null
 * once it is gone. Typed arrays a process allocated but never touched are
 * not resident, so RSS growth is what the state it holds costs.
 */
export function rssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return kb ? Number(kb[1]) * 1_024 : null;
  } catch {
    return null;
  }
}
