import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import uWS from 'uWebSockets.js';
import type WebSocket from 'ws';
import { openSocket } from './ws.js';
import { parentPort } from 'node:worker_threads';
import { Latency } from './latency.js';

/**
 * The floor under any fan-out on this machine: one loopback write per
 * subscriber. A bare uWebSockets.js server (no gateway, no NATS, no log, no
 * conflation) in a process of its own publishes one frame of the size of a
 * state update to a topic all N WebSocket subscribers are on, every
 * `intervalMs`; receivers on the generator's worker threads, the same `ws`
 * clients as the fan-out scenario's (sharing the 2 cores as theirs do),
 * record when each frame arrives. `make bench` shows it beside the
 * gateway's fan-out: what the gateway adds is the difference.
 */
export const FLOOR_FRAME_BYTES = 160;

export type FloorJob = { kind: 'floor'; port: number; connections: number };
export type FloorResult = { type: 'result'; latency: string; samples: number; connected: number };

const now = () => performance.timeOrigin + performance.now();

/** A worker's receivers: WebSocket clients as the fan-out scenario's; each frame carries its send time (f64 at offset 0). */
export async function runFloorReceivers(job: FloorJob): Promise<FloorResult> {
  const latency = new Latency();
  const sockets: WebSocket[] = [];
  for (let i = 0; i < job.connections; i++) {
    const ws = await openSocket(`ws://127.0.0.1:${job.port}/`, { skipUTF8Validation: true });
    ws.on('message', (data: Buffer) => latency.record(data.readDoubleLE(0), now()));
    sockets.push(ws);
  }
  parentPort!.postMessage({ type: 'ready' });
  await new Promise((resolve) => parentPort!.once('message', resolve));
  for (const ws of sockets) ws.terminate();
  return { type: 'result', latency: latency.encode(), samples: latency.count, connected: sockets.length };
}

type Receivers = {
  ready: Promise<void>;
  worker: { postMessage(message: unknown): void };
  result: Promise<FloorResult>;
};
type SenderMessage = { type: 'listening'; port: number } | { type: 'accepted'; count: number } | { type: 'sent' };

const SENDER_ARG = 'fanout-floor-sender';
const TOPIC = 'floor';

/**
 * The writing side, in a process of its own as the gateway is (and with its
 * own descriptors: 10,000 connections on each side in one process pass the
 * 20,000-descriptor limit). Told `{subscribers, rounds, intervalMs}`, it
 * writes every round once all have connected, then says `sent`.
 */
async function runSender(): Promise<void> {
  let connected = 0;
  let wanted = Infinity;
  const tell = (m: SenderMessage) => process.send!(m);
  const app = uWS.App().ws('/*', {
    idleTimeout: 0,
    maxBackpressure: 64 * 1024,
    open: (ws) => {
      ws.subscribe(TOPIC);
      if (++connected === wanted) tell({ type: 'accepted', count: connected });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    app.listen('127.0.0.1', 0, (socket) =>
      socket ? resolve(uWS.us_socket_local_port(socket)) : reject(new Error('fan-out floor: cannot listen')),
    ),
  );
  process.once('message', (m: { subscribers: number; rounds: number; intervalMs: number }) => {
    wanted = m.subscribers;
    const go = async () => {
      while (connected < wanted) await new Promise((resolve) => setTimeout(resolve, 10));
      for (let round = 0; round < m.rounds; round++) {
        const frame = Buffer.alloc(FLOOR_FRAME_BYTES, 0x20);
        frame.writeDoubleLE(now(), 0);
        // One publish to the topic every subscriber is on: what the gateway does per conflated state.
        app.publish(TOPIC, frame, true);
        await new Promise((resolve) => setTimeout(resolve, m.intervalMs));
      }
      tell({ type: 'sent' });
    };
    void go();
  });
  tell({ type: 'listening', port });
}

if (process.argv[2] === SENDER_ARG && process.send) void runSender();

/**
 * Runs the floor: a sender process listens; `start(port, connections)` puts
 * receivers on the generator's worker threads; once all are connected the
 * sender writes `rounds` frames to every connection, `intervalMs` apart.
 * Send times are epoch milliseconds (performance.timeOrigin + now), comparable
 * across the two processes of one machine.
 */
export async function measureFanoutFloor(
  subscribers: number,
  rounds: number,
  intervalMs: number,
  workers: number,
  start: (port: number, connections: number) => Receivers,
): Promise<{ latency: Latency; samples: number; expected: number }> {
  const sender = fork(fileURLToPath(import.meta.url), [SENDER_ARG], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const next = (type: SenderMessage['type']) =>
    new Promise<SenderMessage>((resolve, reject) => {
      const onMessage = (m: SenderMessage) => {
        if (m.type !== type) return;
        sender.off('message', onMessage);
        resolve(m);
      };
      sender.on('message', onMessage);
      sender.once('exit', (code) => reject(new Error(`fan-out floor sender exited with ${code}`)));
    });
  try {
    const { port } = (await next('listening')) as { type: 'listening'; port: number };
    const receivers = Array.from({ length: workers }, (_, w) =>
      start(port, Math.floor(subscribers / workers) + (w < subscribers % workers ? 1 : 0)),
    );
    await Promise.all(receivers.map((r) => r.ready));
    const sent = next('sent');
    sender.send({ subscribers, rounds, intervalMs });
    await sent;
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    for (const r of receivers) r.worker.postMessage('stop');
    const results = await Promise.all(receivers.map((r) => r.result));
    const latency = new Latency();
    for (const r of results) latency.add(Latency.decode(r.latency));
    return { latency, samples: latency.count, expected: subscribers * rounds };
  } finally {
    sender.kill('SIGKILL');
  }
}
