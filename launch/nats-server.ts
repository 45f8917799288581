import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensuredBinary } from './binaries.js';
import { ManagedProcess } from './managed-process.js';
import { freePort } from './ports.js';
import { connect } from '@nats-io/transport-node';
import { inboxPrefix, ROLES, type Role } from '../protocol/names.js';
import { natsAuthorization } from '../protocol/permissions.js';
import { provisionCluster } from '../ctl/provision.js';

/**
 * Real nats-server processes with JetStream on loopback ports (free ones
 * unless given) and store directories (temporary ones unless given), for
 * `make up`, tests and benchmarks. Every server started here is killed by pid
 * when the process that started it exits, even after a failure.
 */

const READY_TIMEOUT_MS = 15_000;

/** Path of nats-server: NATS_SERVER_BIN, else found (or installed) by scripts/ensure-nats.sh. */
export function natsServerBinary(): string {
  return ensuredBinary('NATS_SERVER_BIN', 'ensure-nats.sh');
}

export type NatsServerOptions = {
  /** Server name (required by JetStream clustering); defaults to a unique one. */
  name?: string;
  port?: number;
  storeDir?: string;
  /** Extra command-line arguments (cluster routes, config file...). */
  args?: string[];
  /** The tail of the server's output kept in memory (`log`), across restarts (default 20,000 characters). */
  outputKeptChars?: number;
  /**
   * Require a NATS user per role with the roles' permissions
   * (protocol/permissions.ts). `true`: random passwords; see `credentials`.
   * Services may then not create streams: `start` provisions the cluster
   * (ctl/provision.ts) as the admin once the server is ready, as `make up` does.
   */
  auth?: boolean | Record<Role, string>;
  /** With `auth`: the cluster's shard count, which the permissions and the provisioning cover (default 1). */
  shards?: number;
  /** With `auth`: the auctions each provisioned shard holds (its stream records it; default SHARD_DEFAULTS). */
  auctionsMax?: number;
};

export class NatsServer extends ManagedProcess {
  readonly name: string;
  readonly port: number;
  readonly monitorPort: number;
  readonly storeDir: string;
  private readonly args: string[];
  private readonly ownsStoreDir: boolean;
  /** Passwords of the roles' users when started with `auth`. */
  readonly passwords: Record<Role, string> | null;
  /** The shard count the users' permissions cover and `start` provisioned (with `auth`). */
  readonly shards: number;
  /** What `start` provisioned each shard to hold (undefined: the default). */
  private readonly auctionsMax: number | undefined;

  private constructor(
    options: Required<Omit<NatsServerOptions, 'storeDir' | 'auth' | 'outputKeptChars' | 'auctionsMax'>> & {
      outputKeptChars?: number;
      auctionsMax?: number;
      storeDir?: string;
      monitorPort: number;
      auth?: NatsServerOptions['auth'];
    },
  ) {
    super(`nats-server ${options.name}`, 'Server is ready', READY_TIMEOUT_MS, options.outputKeptChars ?? 20_000);
    this.name = options.name;
    this.port = options.port;
    this.monitorPort = options.monitorPort;
    this.ownsStoreDir = !options.storeDir;
    this.storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), `nats-${options.name}-`));
    this.passwords =
      options.auth === true
        ? (Object.fromEntries(ROLES.map((role) => [role, randomBytes(18).toString('base64url')])) as Record<
            Role,
            string
          >)
        : options.auth || null;
    this.shards = options.shards;
    this.auctionsMax = options.auctionsMax;
    const config: string[] = [];
    if (this.passwords) {
      const file = join(this.storeDir, 'auth.conf');
      writeFileSync(file, natsAuthorization(this.passwords, this.shards), { mode: 0o600 });
      config.push('-c', file);
    }
    this.args = [
      ...config,
      '-a',
      '127.0.0.1',
      '-p',
      String(this.port),
      '-m',
      String(this.monitorPort),
      '-n',
      this.name,
      '-js',
      '-sd',
      this.storeDir,
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
      outputKeptChars: options.outputKeptChars,
      auth: options.auth,
      shards: options.shards ?? 1,
      auctionsMax: options.auctionsMax,
    });
    await server.launch();
    if (server.passwords) await server.provision();
    return server;
  }

  /**
   * Creates the cluster's streams and buckets as the admin (idempotent; again
   * after a restart is harmless), upgrading older ones; says on stderr what it
   * upgraded and what an older stream still lacks (a store made before, under `make up`).
   */
  async provision(): Promise<void> {
    const nc = await connect(this.connectOptions('admin'));
    try {
      const report = await provisionCluster(nc, { shardCount: this.shards, auctionsMax: this.auctionsMax });
      for (const s of [...report.shards.map((x) => ({ ...x, name: x.stream })), ...report.streams, ...report.buckets]) {
        if (s.upgraded.length)
          process.stderr.write(`nats-server ${this.name}: upgraded ${s.name}: ${s.upgraded.join(', ')}\n`);
        for (const l of s.lacking)
          process.stderr.write(
            `nats-server ${this.name}: ${s.name} lacks ${l.setting} (${l.reason}): gateways poll it, live updates up to a second late, until it is recreated\n`,
          );
      }
    } finally {
      await nc.close();
    }
  }

  protected command() {
    return { file: natsServerBinary(), args: this.args };
  }

  protected override cleanupAtExit(): void {
    if (this.ownsStoreDir) rmSync(this.storeDir, { recursive: true, force: true });
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  /** Environment for a process connecting as `role` (nothing when the server has no users). */
  credentials(role: Role): Record<string, string> {
    return this.passwords ? { NATS_USER: role, NATS_PASSWORD: this.passwords[role] } : {};
  }

  /** Options for nats.js `connect` as `role`: its user (if the server has users) and its inbox prefix. */
  connectOptions(role: Role): { servers: string; inboxPrefix: string; user?: string; pass?: string } {
    const base = { servers: this.url, inboxPrefix: inboxPrefix(role) };
    return this.passwords ? { ...base, user: role, pass: this.passwords[role] } : base;
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

  /** Stops the server and deletes its store (when `start` made it). */
  async close(): Promise<void> {
    await this.terminate();
    this.cleanupAtExit();
  }

  recentLog(): string {
    return this.log;
  }
}

/** A JetStream cluster of `size` nodes on loopback, routes fully meshed. */
export class NatsCluster {
  private constructor(readonly nodes: NatsServer[]) {}

  /**
   * `args`: extra flags for every node, e.g. `--no_advertise` so clients keep to the URLs they were given (proxies);
   * `outputKeptChars`: each node's output kept (NatsServerOptions).
   */
  static async start(size = 3, args: string[] = [], outputKeptChars?: number): Promise<NatsCluster> {
    const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
    const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
    const tag = `c${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
    const nodes = await Promise.all(
      clusterPorts.map((clusterPort, i) =>
        NatsServer.start({
          name: `${tag}-n${i}`,
          args: ['--cluster_name', tag, '--cluster', `nats://127.0.0.1:${clusterPort}`, '--routes', routes, ...args],
          outputKeptChars,
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

export const startNats = (options?: NatsServerOptions) => NatsServer.start(options);
export const startNatsCluster = (size?: number, args?: string[]) => NatsCluster.start(size, args);
