import { readFileSync } from 'node:fs';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Tokens } from '../../gateway/auth.js';
import { decode, encode, subjects } from '../../protocol/index.js';
import type { CreatedAuction } from '../../protocol/public.js';
import { AuditProcess, EngineProcess, GatewayProcess, startNats, type NatsServer } from '../../testkit/index.js';

export const SECRET = 'test-secret-0123456789abcdef';
export const tokens = new Tokens(SECRET, 3_600_000);

type Teardown = {
  teardown: (fn: () => unknown) => void;
  passing?: () => boolean;
  comment?: (...message: unknown[]) => void;
};

/** On a failed test, the tail of each process's output goes into the test's report (CI keeps nothing else). */
function reportLogsOnFailure(t: Teardown, processes: { label: string; log: string }[]): void {
  t.teardown(() => {
    if (!t.passing || t.passing() || !t.comment) return;
    for (const p of processes) t.comment(`--- the last of ${p.label}'s output ---\n${p.log.slice(-8_000)}`);
  });
}

/** An error answer of the API (`requestId` only on an `internal` one). */
export type ApiError = { error: { code: string; message: string; requestId?: string } };

/** `POST /v1/sessions`. */
export type Session = { userId: number; token: string; expiresAt: number };

/** An answer: its body parsed as JSON (the text when it is not JSON, null when empty), of the type the caller expects. */
export type HttpResponse<T = unknown> = { status: number; body: T };

export type Http = <T = unknown>(
  method: string,
  path: string,
  body?: unknown,
  token?: string,
  headers?: Record<string, string>,
) => Promise<HttpResponse<T>>;

export function httpClient(baseUrl: string): Http {
  return async <T>(
    method: string,
    path: string,
    body?: unknown,
    token?: string,
    headers: Record<string, string> = {},
  ): Promise<HttpResponse<T>> => {
    const response = await fetch(baseUrl + path, {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...headers,
      },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON (metrics): keep the text.
    }
    return { status: response.status, body: parsed as T };
  };
}

export type System = Awaited<ReturnType<typeof startSystem>>;

/**
 * NATS (with a user per role and the roles' permissions, as `make up` runs
 * it, and the streams and buckets of two shards provisioned), one engine for shards 0-1, the audit and one gateway: real processes
 * on free ports. The test's own connection is the admin's.
 */
export async function startSystem(t: Teardown, gatewayArgs: string[] = []) {
  const nats: NatsServer = await startNats({ auth: true, shards: 2 }); // provisioned for shards 0-1
  t.teardown(() => nats.close());
  const engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0-1', env: nats.credentials('engine') });
  t.teardown(() => engine.close());
  const audit = await AuditProcess.start({ natsUrl: nats.url, shards: '0-1', env: nats.credentials('audit') });
  t.teardown(() => audit.close());
  const gateway = await GatewayProcess.start({
    natsUrl: nats.url,
    secret: SECRET,
    args: gatewayArgs,
    env: nats.credentials('gateway'),
  });
  t.teardown(() => gateway.close());
  reportLogsOnFailure(t, [gateway, engine, audit]);
  const nc: NatsConnection = await connect(nats.connectOptions('admin'));
  t.teardown(() => nc.close());
  const http = httpClient(gateway.url);
  let users = 0;
  const system = {
    nats,
    engine,
    audit,
    gateway,
    nc,
    http,
    /** Registers a fresh user and signs in. */
    async user(): Promise<{ userId: number; token: string; username: string }> {
      const username = `user${++users}_${process.pid}`;
      const created = await http('POST', '/v1/users', { username, password: 'correct horse' });
      if (created.status !== 201) throw new Error(JSON.stringify(created));
      const session = await http<Session>('POST', '/v1/sessions', { username, password: 'correct horse' });
      return { userId: session.body.userId, token: session.body.token, username };
    },
    async auction(token: string, fields: Record<string, unknown> = {}): Promise<CreatedAuction> {
      const created = await http<CreatedAuction>(
        'POST',
        '/v1/auctions',
        { title: 'A lamp', startingPrice: 1_000, endsAt: Date.now() + 3_600_000, ...fields },
        token,
      );
      if (created.status !== 201) throw new Error(JSON.stringify(created));
      return created.body;
    },
    /** The engine's state hash of every shard (unchanged by anything refused). */
    async stateHashes(): Promise<string[]> {
      return Promise.all(
        [0, 1].map(async (shard) => {
          const reply = await nc.request(subjects.control(shard), encode({ op: 'hash' }), { timeout: 3_000 });
          return (decode(reply.data) as { stateHash: string; lastSeq: number }).stateHash;
        }),
      );
    },
  };
  return system;
}

/** A process's resident memory in bytes, from /proc (fuzzing tests bound the gateway's growth with it). */
export function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}
