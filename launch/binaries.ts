import { execFileSync } from 'node:child_process';

const found = new Map<string, string>();

/**
 * The path of a server binary the project starts itself: `$envVar` when set,
 * else what `scripts/<script>` prints (it finds the binary, or installs
 * Debian's package when it may: scripts/ensure-debian-binary.sh). Asked once
 * per process.
 */
export function ensuredBinary(envVar: string, script: string): string {
  const known = found.get(envVar);
  if (known) return known;
  const path =
    process.env[envVar] ||
    execFileSync('bash', [new URL(`../../scripts/${script}`, import.meta.url).pathname], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
  found.set(envVar, path);
  return path;
}
