import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { gatherReports, shardStreams } from '../../ctl/cluster-view.js';
import type { ProcessStatus, ShardCopyStatus } from '../../protocol/cluster.js';
import {
  AuditProcess,
  EngineProcess,
  freePort,
  startNats,
  type GatewayProcess,
  type NatsServer,
} from '../../testkit/index.js';
import { startLoadGateway } from './gateway-flags.js';

/** The engine processes of a scale run: two primaries of half the shards each and a replica of each half. */
export type EngineName = 'a' | 'b' | 'ra' | 'rb';
type EngineReport = Extract<ProcessStatus, { kind: 'engine' }>;
/** An engine's memory as its V8 sees it (prom-client's default metrics on --metrics-port), bytes. */
export type EngineMemory = { heapUsed: number; heapTotal: number; external: number };

/**
 * The cluster `make bench-scale` measures: NATS with a user per role and
 * `shards` shards provisioned to hold `auctionsMax` each, engines `a`
 * (shards of the first half) and `b` (the second half) with replicas `ra`
 * and `rb`, one audit of every shard and one gateway: real processes on free
 * ports, stopped by pid.
 */
export class ScaleCluster {
  private constructor(
    readonly nats: NatsServer,
    readonly engines: Record<EngineName, EngineProcess>,
    readonly audit: AuditProcess,
    readonly gateway: GatewayProcess,
    readonly nc: NatsConnection,
    readonly jsm: JetStreamManager,
    readonly shards: number,
    private readonly metricsPorts: Record<EngineName, number>,
  ) {
    for (const [name, p] of this.processes())
      p.onExit((exit) => (this.lastExits[name] = `code ${exit.code}, signal ${exit.signal}`));
  }

  /** How each process last ended, for a settle that finds one gone. */
  private readonly lastExits: Record<string, string> = {};

  private processes(): [string, EngineProcess | AuditProcess | GatewayProcess][] {
    return [...Object.entries(this.engines), ['audit', this.audit], ['gateway', this.gateway]];
  }

  /** `auditDataDir`: the audit's shard files go there and stay after the run (else a temporary directory, removed). */
  static async start(
    shards: number,
    auctionsMax: number,
    secret: string,
    auditDataDir?: string,
  ): Promise<ScaleCluster> {
    const nats = await startNats({ auth: true, shards, auctionsMax, outputKeptChars: 100_000 });
    const half = shards / 2;
    const first = `0-${half - 1}`;
    const second = `${half}-${shards - 1}`;
    const metricsPorts = {} as Record<EngineName, number>;
    const engine = async (id: EngineName, list: string, role: 'primary' | 'replica') => {
      metricsPorts[id] = await freePort();
      return EngineProcess.start({
        natsUrl: nats.url,
        shards: list,
        role,
        env: nats.credentials('engine'),
        args: ['--engine-id', id, '--metrics-port', String(metricsPorts[id])],
        readyTimeoutMs: 600_000, // a restart at ten million rebuilds its shards before it says so
      });
    };
    const a = await engine('a', first, 'primary');
    const b = await engine('b', second, 'primary');
    const ra = await engine('ra', first, 'replica');
    const rb = await engine('rb', second, 'replica');
    const audit = await AuditProcess.start({
      natsUrl: nats.url,
      shards: `0-${shards - 1}`,
      env: nats.credentials('audit'),
      dataDir: auditDataDir,
    });
    const gateway = await startLoadGateway(nats, secret);
    const nc = await connect(nats.connectOptions('admin'));
    return new ScaleCluster(
      nats,
      { a, b, ra, rb },
      audit,
      gateway,
      nc,
      await jetstreamManager(nc),
      shards,
      metricsPorts,
    );
  }

  /** The other copy of the same half: a primary's replica, a replica's primary. */
  static pairOf(name: EngineName): EngineName {
    return ({ a: 'ra', ra: 'a', b: 'rb', rb: 'b' } as const)[name];
  }

  /** The engine that holds shard `shard` in the given half's role. */
  static primaryOf(shard: number, shards: number): EngineName {
    return shard < shards / 2 ? 'a' : 'b';
  }

  /** Every engine's heap and external memory, or null for one that does not answer. */
  async engineMemory(): Promise<Record<EngineName, EngineMemory | null>> {
    const metric = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    const one = async (name: EngineName): Promise<EngineMemory | null> => {
      try {
        const text = await (await fetch(`http://127.0.0.1:${this.metricsPorts[name]}/metrics`)).text();
        return {
          heapUsed: metric(text, 'engine_nodejs_heap_size_used_bytes'),
          heapTotal: metric(text, 'engine_nodejs_heap_size_total_bytes'),
          external: metric(text, 'engine_nodejs_external_memory_bytes'),
        };
      } catch {
        return null;
      }
    };
    const names = Object.keys(this.engines) as EngineName[];
    const all = await Promise.all(names.map(one));
    return Object.fromEntries(names.map((n, i) => [n, all[i]])) as Record<EngineName, EngineMemory | null>;
  }

  async copies(): Promise<(ShardCopyStatus & { engine: string })[]> {
    const reports = await gatherReports(this.nc, 2_000);
    return reports
      .filter((r): r is EngineReport => r.kind === 'engine')
      .flatMap((r) => r.shards.map((s) => ({ ...s, engine: r.id })));
  }

  /**
   * Resolves once every shard is served with nothing queued, every replica
   * follows at the log's end and the audit has written the whole log; says
   * what it still waits for every 10 s. Rejects after `timeoutMs`.
   */
  async settled(timeoutMs: number, say: (line: string) => void, want = { replicas: true }): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastSaid = Date.now();
    for (;;) {
      // A process that died will not catch up: say so now, not at the deadline.
      const gone = this.processes().filter(([, p]) => !p.isRunning);
      if (gone.length)
        throw new Error(
          `not running: ${gone.map(([name]) => `${name} (${this.lastExits[name] ?? 'never started'})`).join(', ')}`,
        );
      const [reports, streams] = await Promise.all([gatherReports(this.nc, 2_000), shardStreams(this.jsm)]);
      const copies = reports.filter((r): r is EngineReport => r.kind === 'engine').flatMap((r) => r.shards);
      const audited = new Map(
        reports.flatMap((r) => (r.kind === 'audit' ? r.shards.map((s) => [s.shard, s.streamSeq] as const) : [])),
      );
      const waiting: string[] = [];
      for (let shard = 0; shard < this.shards; shard++) {
        const last = streams.get(shard) ?? 0;
        const serving = copies.filter((c) => c.shard === shard && c.status === 'serving');
        if (serving.length !== 1 || serving[0].pendingCommands > 0 || serving[0].inflightBatches > 0)
          waiting.push(`shard ${shard} served by ${serving.length}`);
        const followers = copies.filter((c) => c.shard === shard && c.status !== 'serving');
        if (want.replicas && !followers.some((c) => c.status === 'following' && c.streamSeq >= last))
          waiting.push(
            `shard ${shard}'s replica behind (${followers.map((c) => `${c.engineId} ${c.status} at ${c.streamSeq} of ${last}, lag ${JSON.stringify(c.lag)}`).join(', ') || 'none'})`,
          );
        if ((audited.get(shard) ?? -1) < last) waiting.push(`audit of ${shard} at ${audited.get(shard)} of ${last}`);
      }
      if (waiting.length === 0) return;
      if (Date.now() > deadline) throw new Error(`not settled after ${timeoutMs} ms: ${waiting.join('; ')}`);
      if (Date.now() - lastSaid > 10_000) {
        say(`  waiting: ${waiting.slice(0, 6).join('; ')}${waiting.length > 6 ? '...' : ''}`);
        lastSaid = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
    await Promise.allSettled([
      this.gateway.close(),
      this.audit.close(),
      ...Object.values(this.engines).map((e) => e.close()),
    ]);
    await this.nats.close();
  }
}
