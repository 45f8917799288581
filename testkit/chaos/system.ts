import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { provisionCluster } from '../../ctl/provision.js';
import {
  AuditProcess,
  EngineProcess,
  GatewayProcess,
  NatsCluster,
  type ManagedProcess,
  type NatsServer,
} from '../../launch/index.js';
import { TcpProxy } from '../tcp-proxy.js';
import { leaderChanges, type LeaderChange } from './leaders.js';

/** What a fault can hit: a service process (with its own path to NATS), or a NATS node. */
export const TARGET_KINDS = ['engine', 'replica', 'gateway', 'audit', 'nats'] as const;
export type TargetKind = (typeof TARGET_KINDS)[number];

export type Target = {
  name: string;
  kind: TargetKind;
  process: ManagedProcess;
  /** The process's links to the NATS nodes, one proxy per node (none for a NATS node itself). */
  links: TcpProxy[];
};

export type SystemOptions = {
  shards: number;
  /** Engine capacities, recorded in the shard streams; the checker's reference model uses the same. */
  auctionsMax: number;
  idempotencyEntriesMax: number;
  /** The token secret every gateway shares (the clients mint their tokens with it). */
  secret: string;
};

/**
 * The cluster `make chaos` runs, every part a real process: three NATS nodes
 * (JetStream R3: every stream and bucket on all three), two engines sharing
 * the shards by placement, two replicas (hot standbys of every shard), the
 * audit and two gateways. Each service reaches NATS through a TCP proxy per
 * node, so the network between it and NATS can be stalled or cut alone; the
 * nodes do not advertise the cluster's own addresses (`--no_advertise`), so
 * no client goes around its proxies.
 */
export class ChaosSystem {
  /** Processes that exited when no fault killed them (each is started again, as a supervisor would). */
  readonly unexpectedExits: { target: string; at: number; code: number | null; signal: string | null }[] = [];
  private readonly expected = new Set<string>();
  private closing = false;

  private constructor(
    readonly nats: NatsCluster,
    readonly targets: Target[],
    readonly gateways: GatewayProcess[],
    readonly audit: AuditProcess,
    readonly options: SystemOptions,
  ) {}

  static async start(options: SystemOptions): Promise<ChaosSystem> {
    // Whole logs: the report reads every leader election out of them (leaders.ts).
    const nats = await NatsCluster.start(3, ['--no_advertise'], NATS_LOG_KEPT_CHARS);
    const targets: Target[] = nats.nodes.map((node: NatsServer, i) => ({
      name: `nats-${i}`,
      kind: 'nats',
      process: node,
      links: [],
    }));
    const system = new ChaosSystem(nats, targets, [], null as unknown as AuditProcess, options);
    try {
      await system.provision();
      const shards = `0-${options.shards - 1}`;
      const capacity = [
        '--stream-replicas',
        '3',
        '--auctions-max',
        String(options.auctionsMax),
        '--idempotency-entries',
        String(options.idempotencyEntriesMax),
      ];
      for (const id of ['engine-a', 'engine-b']) {
        const links = await system.linksToNats();
        const engine = await EngineProcess.start({
          natsUrl: urls(links),
          shards: '',
          args: ['--engine-id', id, '--shard-count', String(options.shards), ...capacity],
        });
        targets.push({ name: id, kind: 'engine', process: engine, links });
      }
      for (const id of ['replica-a', 'replica-b']) {
        const links = await system.linksToNats();
        const replica = await EngineProcess.start({
          natsUrl: urls(links),
          shards,
          role: 'replica',
          args: ['--engine-id', id, ...capacity],
        });
        targets.push({ name: id, kind: 'replica', process: replica, links });
      }
      const auditLinks = await system.linksToNats();
      const audit = await AuditProcess.start({ natsUrl: urls(auditLinks), shards });
      (system as { audit: AuditProcess }).audit = audit;
      targets.push({ name: 'audit', kind: 'audit', process: audit, links: auditLinks });
      for (const id of ['gateway-a', 'gateway-b']) {
        const links = await system.linksToNats();
        const gateway = await GatewayProcess.start({
          natsUrl: urls(links),
          secret: options.secret,
          args: ['--stream-replicas', '3'],
        });
        system.gateways.push(gateway);
        targets.push({ name: id, kind: 'gateway', process: gateway, links });
      }
      for (const target of targets) system.watchExits(target);
      return system;
    } catch (error) {
      await system.close();
      throw error;
    }
  }

  /**
   * Every stream and bucket, R3, before any service starts (as `auctionctl
   * cluster init` would). A cluster that has just elected its meta leader
   * may still time out the first stream creations: provisioning is
   * idempotent, so it is simply run again (seeds 102 and 103 failed there).
   */
  private async provision(): Promise<void> {
    const nc = await connect({ servers: this.nats.servers });
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await provisionCluster(nc, {
            shardCount: this.options.shards,
            replicas: 3,
            auctionsMax: this.options.auctionsMax,
            idempotencyEntriesMax: this.options.idempotencyEntriesMax,
          });
          return;
        } catch (error) {
          if (attempt === PROVISION_ATTEMPTS_MAX) throw error;
        }
      }
    } finally {
      await nc.close();
    }
  }

  private linksToNats(): Promise<TcpProxy[]> {
    return Promise.all(this.nats.nodes.map((node) => TcpProxy.start('127.0.0.1', node.port)));
  }

  /** A fault is about to kill `name`: its exit is not unexpected (until `exitHandled`). */
  expectExit(name: string): void {
    this.expected.add(name);
  }

  exitHandled(name: string): void {
    this.expected.delete(name);
  }

  /**
   * Starts a process again as a supervisor would (`make up`'s restarts with
   * backoff): a start can fail while the cluster is still recovering from a
   * fault, so it is tried RELAUNCH_ATTEMPTS_MAX times.
   */
  async restart(target: Target): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await target.process.launch();
      } catch (error) {
        if (attempt === RELAUNCH_ATTEMPTS_MAX || this.closing) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  /** Every exit no fault caused is recorded (a checker fails the run on it) and the process started again. */
  private watchExits(target: Target): void {
    target.process.onExit((exit) => {
      if (this.closing || this.expected.has(target.name)) return;
      this.unexpectedExits.push({ target: target.name, at: Date.now(), code: exit.code, signal: exit.signal });
      setTimeout(() => void this.restart(target).catch(() => undefined), 500);
    });
  }

  target(name: string): Target {
    const found = this.targets.find((t) => t.name === name);
    if (!found) throw new Error(`no chaos target ${name}`);
    return found;
  }

  /** The leaderships every NATS node logged, across its restarts. */
  leaderChanges(): LeaderChange[] {
    return this.targets.filter((t) => t.kind === 'nats').flatMap((t) => leaderChanges(t.name, t.process.log));
  }

  /** Writes every process's output (across its restarts) to `<dir>/<name>.log`. */
  saveLogs(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const t of this.targets) writeFileSync(join(dir, `${t.name}.log`), t.process.log);
  }

  /** Stops every process and proxy (a paused process is woken first). */
  async close(): Promise<void> {
    this.closing = true;
    const services = this.targets.filter((t) => t.kind !== 'nats');
    await Promise.all(
      services.map(async (t) => {
        await (t.process as EngineProcess | GatewayProcess | AuditProcess).close();
        await Promise.all(t.links.map((l) => l.close()));
      }),
    );
    await this.nats.close();
  }
}

const PROVISION_ATTEMPTS_MAX = 5;
const NATS_LOG_KEPT_CHARS = 20_000_000;
const RELAUNCH_ATTEMPTS_MAX = 5;

const urls = (links: TcpProxy[]) => links.map((l) => l.url).join(',');
