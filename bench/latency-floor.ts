import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { saveResult } from './results.js';
import { Latency } from './harness/latency.js';
import { BidSocket, readAnswer } from './harness/bid-socket.js';
import { EngineClient, type CreateOutcome } from '../protocol/index.js';
import { EngineProcess, GatewayProcess, startNats } from '../testkit/index.js';
import { Tokens } from '../gateway/auth.js';
import { LOAD_GATEWAY_FLAGS } from './harness/gateway-flags.js';

/**
 * `make bench-latency-floor`: the latency of one request at a time on an
 * idle machine, hop by hop: a core NATS request the server answers itself,
 * a JetStream publish, a bid decided by the engine (a request, an append, a
 * reply) and a bid through the gateway over WebSocket. Nothing queues, so
 * each p99 is the jitter of the hops below it: no p99 target under load can
 * be below the p99 of the path at rest.
 * Last line: {"natsRequestP99Ms","jetstreamPublishP99Ms","engineBidP99Ms","gatewayBidP99Ms"}.
 */
const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '2000' },
    out: { type: 'string', default: 'bench/results/latency-floor.json' },
  },
});
const N = Number(values.requests);
const say = (line: string) => process.stderr.write(`${line}\n`);

async function oneAtATime(name: string, request: (i: number) => Promise<unknown>): Promise<Latency> {
  for (let i = 0; i < 50; i++) await request(-1 - i); // warm-up, not measured
  const latency = new Latency();
  for (let i = 0; i < N; i++) {
    const at = performance.now();
    await request(i);
    latency.record(at, performance.now());
  }
  say(
    `  ${name}: p50 ${latency.ms(50)} ms, p99 ${latency.ms(99)} ms, p99.9 ${latency.ms(99.9)} ms, max ${latency.ms(100)} ms`,
  );
  return latency;
}

const nats = await startNats();
const nc = await connect({ servers: nats.url });
const secret = 'floor-secret-0123456789abcdef';
let engine: EngineProcess | null = null;
let gateway: GatewayProcess | null = null;
try {
  say(`latency floor: ${N} requests one at a time per hop, nothing else running`);
  const natsRequest = await oneAtATime('core NATS request (answered by the server)', () =>
    nc.request('$JS.API.INFO', undefined, { timeout: 5_000 }),
  );
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'FLOOR', subjects: ['floor.>'] });
  const js = jetstream(nc);
  const payload = new Uint8Array(120);
  const jetstreamPublish = await oneAtATime('JetStream publish + ack', () => js.publish('floor.bids', payload));

  engine = await EngineProcess.start({ natsUrl: nats.url, shards: '0' });
  const client = new EngineClient(nc, 5_000);
  const created = (await client.sendOne(0, {
    type: 'create',
    sellerId: 1,
    startingPrice: 100,
    endsAt: Date.now() + 3_600_000,
  })) as CreateOutcome;
  const auctionId = created.auctionId;
  const engineBid = await oneAtATime('bid decided by the engine (request, append, reply)', async (i) => {
    const result = await client.bid(auctionId, 2 + (i & 1), 1_000_000 + i, 1_000 + (i + 100) * 100);
    if (result.status === 'error' || ('reason' in result && result.reason === 'unavailable'))
      throw new Error(`the engine did not decide a bid: ${JSON.stringify(result)}`);
  });

  gateway = await GatewayProcess.start({ natsUrl: nats.url, secret, args: [...LOAD_GATEWAY_FLAGS] });
  const socket = await BidSocket.open(
    `${gateway.wsUrl}?token=${new Tokens(secret, 3_600_000).mint(77).token}&format=msgpack`,
  );
  let answered: () => void = () => undefined;
  // Every answer must be a bid the engine decided: a rate limit or an error would measure the gateway alone.
  const undecided: string[] = [];
  socket.onAnswer = (frame) => {
    const a = readAnswer(frame);
    if (
      a.type !== 'bid.result' ||
      (a.status !== 'accepted' && (a.reason === 'rate_limited' || a.reason === 'unavailable'))
    )
      undecided.push(`${a.type} ${a.status ?? ''} ${a.reason ?? a.code ?? ''}`);
    answered();
  };
  const gatewayBid = await oneAtATime('bid through the gateway over WebSocket', (i) => {
    const done = new Promise<void>((resolve) => (answered = resolve));
    socket.queueBid(auctionId, 100_000_000 + (i + 100) * 100, 2_000_000 + i, i + 100);
    socket.flush();
    return done;
  });
  socket.terminate();
  if (undecided.length > 0)
    throw new Error(`${undecided.length} gateway answers were not decided bids, e.g. ${undecided[0]}`);

  const line = {
    natsRequestP99Ms: natsRequest.ms(99),
    jetstreamPublishP99Ms: jetstreamPublish.ms(99),
    engineBidP99Ms: engineBid.ms(99),
    gatewayBidP99Ms: gatewayBid.ms(99),
  };
  const hops = { natsRequest, jetstreamPublish, engineBid, gatewayBid };
  saveResult(values.out, 'latency-floor', {
    requests: N,
    hops: Object.fromEntries(Object.entries(hops).map(([k, l]) => [k, l.percentiles([50, 99, 99.9, 100])])),
    line,
  });
  process.stdout.write(`${JSON.stringify(line)}\n`);
} finally {
  await gateway?.close();
  await engine?.close();
  await nc.close();
  await nats.close();
}
