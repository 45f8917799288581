import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensuredBinary } from '../../launch/binaries.js';
import { freePort, ManagedProcess } from '../../testkit/index.js';
import type { PeerDesignName } from '../peers/design.js';

/**
 * The processes of one peer design for `make bench` (bench/peers/): its
 * front door, what the design needs behind it (a redis-server of its own
 * for the Redis peers; the JetStream-first decider), started on free ports
 * and stopped by pid. `metered` names every process whose CPU a bid of
 * this design costs (the shared nats-server or Postgres are added by the
 * caller, who knows their pids).
 */

/** The redis-server binary: REDIS_SERVER_BIN, else scripts/ensure-redis.sh (which installs Debian's package as root). */
export function redisServerBinary(): string {
  return ensuredBinary('REDIS_SERVER_BIN', 'ensure-redis.sh');
}

/** A redis-server on a free port of 127.0.0.1 with its append-only file in a temp dir of its own. */
export class RedisServer extends ManagedProcess {
  readonly dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));

  private constructor(
    readonly port: number,
    private readonly appendfsync: 'always' | 'everysec',
  ) {
    super(`redis-server (appendfsync ${appendfsync})`, 'Ready to accept connections');
  }

  static async start(appendfsync: 'always' | 'everysec'): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), appendfsync);
    await server.launch();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  protected command() {
    return {
      file: redisServerBinary(),
      args: [
        '--bind',
        '127.0.0.1',
        '--port',
        String(this.port),
        '--dir',
        this.dir,
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        this.appendfsync,
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
      ],
    };
  }

  protected override cleanupAtExit(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  async close(): Promise<void> {
    await this.terminate();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export type PeerProcessOptions = {
  design: PeerDesignName;
  role?: 'door' | 'decider';
  secret: string;
  auctions: number;
  databaseUrl?: string;
  redisUrl?: string;
  nats?: { url: string; user?: string; pass?: string };
};

/** A process of bench/peers/main.js: a front door with a design behind it, or the JetStream-first decider. */
export class PeerProcess extends ManagedProcess {
  private constructor(
    private readonly o: PeerProcessOptions,
    readonly port: number,
  ) {
    super(
      `peer ${o.design}${o.role === 'decider' ? ' decider' : ''}`,
      o.role === 'decider' ? 'peer decider ready' : 'peer ready on port',
      60_000,
    );
  }

  static async start(options: PeerProcessOptions): Promise<PeerProcess> {
    const peer = new PeerProcess(options, await freePort());
    await peer.launch();
    return peer;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/v1/ws`;
  }

  /** The door's counters; `pending` is how many bids wait for their design. */
  async status(): Promise<{ pending: number; decided: number; unavailable: number; invalid: number; failed: number }> {
    const res = await fetch(`http://127.0.0.1:${this.port}/status`);
    return (await res.json()) as Awaited<ReturnType<PeerProcess['status']>>;
  }

  protected command() {
    const o = this.o;
    return {
      file: process.execPath,
      args: [
        new URL('../peers/main.js', import.meta.url).pathname,
        '--design',
        o.design,
        '--role',
        o.role ?? 'door',
        '--secret',
        o.secret,
        '--port',
        String(this.port),
        '--auctions',
        String(o.auctions),
        ...(o.databaseUrl ? ['--database-url', o.databaseUrl] : []),
        ...(o.redisUrl ? ['--redis-url', o.redisUrl] : []),
        ...(o.nats
          ? ['--nats-url', o.nats.url, '--nats-user', o.nats.user ?? '', '--nats-pass', o.nats.pass ?? '']
          : []),
      ],
    };
  }

  async close(): Promise<void> {
    await this.terminate();
  }
}

/** One peer design, running: where the generator connects, whose CPU to count, how to wait for it and stop it. */
export type RunningPeer = {
  name: PeerDesignName;
  description: string;
  wsUrl: string;
  /** Pids by the name the report gives them (the design's own processes). */
  pids: Record<string, number | undefined>;
  door: PeerProcess;
  close(): Promise<void>;
};

/**
 * Starts a peer design's processes. For Postgres and JetStream the servers
 * are the caller's (DATABASE_URL; the bench's nats-server); Redis peers get
 * a redis-server of their own, so appendfsync is the one named.
 */
export async function startPeer(
  name: PeerDesignName,
  o: { secret: string; auctions: number; databaseUrl?: string; nats?: PeerProcessOptions['nats'] },
): Promise<RunningPeer> {
  const base = { design: name, secret: o.secret, auctions: o.auctions };
  if (name === 'redis-always' || name === 'redis-everysec') {
    const redis = await RedisServer.start(name === 'redis-always' ? 'always' : 'everysec');
    try {
      const door = await PeerProcess.start({ ...base, redisUrl: redis.url });
      return running(name, door, { 'front door': door.pid, 'redis-server': redis.pid }, [door, redis]);
    } catch (error) {
      await redis.close();
      throw error;
    }
  }
  if (name === 'jetstream-first') {
    const door = await PeerProcess.start({ ...base, nats: o.nats });
    try {
      const decider = await PeerProcess.start({ ...base, role: 'decider', nats: o.nats });
      return running(name, door, { 'front door': door.pid, decider: decider.pid }, [door, decider]);
    } catch (error) {
      await door.close();
      throw error;
    }
  }
  const door = await PeerProcess.start({ ...base, databaseUrl: o.databaseUrl });
  return running(name, door, { 'front door': door.pid }, [door]);
}

function running(
  name: PeerDesignName,
  door: PeerProcess,
  pids: Record<string, number | undefined>,
  processes: { close(): Promise<void> }[],
): RunningPeer {
  const described = door.log.split('\n').find((l) => l.startsWith(`peer ${name}: `));
  return {
    name,
    description: described ? described.slice(`peer ${name}: `.length) : name,
    wsUrl: door.wsUrl,
    pids,
    door,
    close: async () => {
      for (const p of processes) await p.close();
    },
  };
}
