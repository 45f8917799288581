import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

/**
 * Real nats-server processes with JetStream on free loopback ports and
 * temporary store directories, for tests and benchmarks. Every server started
 * here is killed by pid when the test process exits, even after a failure.
 */

const READY_TIMEOUT_MS = 15_000;
const running = new Set<NatsServer>();

process.once('exit', () => {
  for (const server of running) server.killNow();
});

let cachedBinary: string | undefined;

/** Path of nats-server: NATS_SERVER_BIN, else found (or installed) by scripts/ensure-nats.sh. */
export function natsServerBinary(): string {
  if (cachedBinary) return cachedBinary;
  const fromEnv = process.env.NATS_SERVER_BIN;
  if (fromEnv) return (cachedBinary = fromEnv);
  const script = new URL('../../scripts/ensure-nats.sh', import.meta.url).pathname;
  cachedBinary = execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  return cachedBinary;
}

export type NatsServerOptions = {
  /** Server name (required by JetStream clustering); defaults to a unique one. */
  name?: string;
  port?: number;
  storeDir?: string;
  /** Extra command-line arguments (cluster routes, config file...). */
  args?: string[];
};

export class NatsServer {
  readonly name: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  private readonly args: string[];
  private child: ChildProcess | null = null;
  private readonly ownsStoreDir: boolean;
  /** Output kept for failure messages; bounded. */
  private log = '';

  private constructor(options: Required<Omit<NatsServerOptions, 'storeDir'>> & { storeDir?: string; monitorPort: number }) {
    this.name = options.name;
    this.port = options.port;
    this.monitorPort = options.monitorPort;
    this.ownsStoreDir = !options.storeDir;
    this.storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), `nats-${options.name}-`));
    this.args = [
      '-a', '127.0.0.1',
      '-p', String(this.port),
      '-m', String(this.monitorPort),
      '-n', this.name,
      '-js',
      '-sd', this.storeDir,
      ...options.args,
    ];
  }

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const server = new NatsServer({
      name: options.name ?? `t${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      port: options.port ?? (await freePort()),
      monitorPort: await freePort(),
      storeDir: options.storeDir,
      args: options.args ?? [],
    });
    await server.launch();
    return server;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get isRunning(): boolean {
    return this.child !== null;
  }

  /** Starts the process (again, after a kill) with the same ports and store. */
  async launch(): Promise<void> {
    if (this.child) throw new Error(`nats-server ${this.name} is already running`);
    const child = spawn(natsServerBinary(), this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    // Readiness is read from this process's output only, never an earlier run's.
    let output = '';
    running.add(this);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`nats-server ${this.name} not ready in ${READY_TIMEOUT_MS} ms:\n${this.log}`)), READY_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        this.log = (this.log + chunk.toString()).slice(-20_000);
        output = (output + chunk.toString()).slice(-20_000);
        if (output.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`nats-server ${this.name} exited (${code ?? signal}) before ready:\n${this.log}`));
      });
    });
    child.once('exit', () => {
      if (this.child === child) {
        this.child = null;
        running.delete(this);
      }
    });
    await ready;
  }

  /** Waits until the monitoring endpoint reports JetStream healthy (meta leader known). */
  async waitHealthy(timeoutMs = READY_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      try {
        const response = await fetch(`http://127.0.0.1:${this.monitorPort}/healthz`);
        last = await response.text();
        if (response.ok) return;
      } catch (error) {
        last = String(error);
      }
      // Polling is the only signal the server offers for JetStream health.
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`nats-server ${this.name} not healthy: ${last}`);
  }

  /** Sends a signal and, for SIGKILL/SIGTERM, waits until the process is gone. */
  async signal(signal: 'SIGKILL' | 'SIGTERM' | 'SIGSTOP' | 'SIGCONT'): Promise<void> {
    const child = this.child;
    if (!child) throw new Error(`nats-server ${this.name} is not running`);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill(signal);
      await exited;
    } else {
      child.kill(signal);
    }
  }

  kill(): Promise<void> {
    return this.signal('SIGKILL');
  }

  pause(): Promise<void> {
    return this.signal('SIGSTOP');
  }

  resume(): Promise<void> {
    return this.signal('SIGCONT');
  }

  async restart(): Promise<void> {
    if (this.child) await this.kill();
    await this.launch();
  }

  /** Stops the server (SIGCONT first in case it is paused) and deletes its store. */
  async close(): Promise<void> {
    if (this.child) {
      this.child.kill('SIGCONT');
      await this.kill();
    }
    if (this.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  }

  /** Synchronous last resort at process exit. */
  killNow(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // Already gone.
    }
    if (this.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  }

  recentLog(): string {
    return this.log;
  }
}

/** A JetStream cluster of `size` nodes on loopback, routes fully meshed. */
export class NatsCluster {
  private constructor(readonly nodes: NatsServer[]) {}

  static async start(size = 3): Promise<NatsCluster> {
    const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
    const tag = `c${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const nodes = await Promise.all(
      clusterPorts.map((clusterPort, i) =>
        NatsServer.start({
          name: `${tag}-n${i}`,
          args: ['--cluster_name', tag, '--cluster', `nats://127.0.0.1:${clusterPort}`, '--routes', routes],
        }),
      ),
    );
    const cluster = new NatsCluster(nodes);
    await Promise.all(nodes.map((n) => n.waitHealthy()));
    return cluster;
  }

  /** Client URLs of the running nodes. */
  get servers(): string[] {
    return this.nodes.filter((n) => n.isRunning).map((n) => n.url);
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.close()));
  }
}

export const startNats = NatsServer.start;
export const startNatsCluster = NatsCluster.start;
