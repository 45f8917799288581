import { parseArgs } from 'node:util';
import { saveResult } from './results.js';
import { connect } from '@nats-io/transport-node';
import { EngineClient, type CreateOutcome } from '../protocol/index.js';
import { BidLoad, EngineProcess, replayShard, startNats } from '../testkit/index.js';

/**
 * `make bench-failover`: a primary and a replica for one shard under a steady
 * load of clients that retry `unavailable` with the same bidId. The primary
 * is SIGKILLed K times (the killed one comes back as the standby each time).
 * Unavailability is what clients saw: from the first request that found no
 * primary to the next answer. Afterwards the stream is replayed to count
 * acknowledged bids it lacks and bid ids accepted twice.
 * Last line: {"kills","unavailableMsMax","unavailableMsP50","ackedLost","acceptedTwice"}.
 */
const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '5' },
    clients: { type: 'string', default: '8' },
    'lease-ttl-ms': { type: 'string', default: '1000' },
    out: { type: 'string', default: 'bench/results/failover.json' },
  },
});
const KILLS = Number(values.kills);
const LEASE = [
  '--lease-ttl-ms',
  values['lease-ttl-ms'],
  '--lease-renew-ms',
  String(Math.floor(Number(values['lease-ttl-ms']) / 5)),
];
const say = (line: string) => process.stderr.write(`${line}\n`);

const nats = await startNats();
const nc = await connect({ servers: nats.url });
const nodes = {
  a: await EngineProcess.start({ natsUrl: nats.url, shards: '0', args: ['--engine-id', 'a', ...LEASE] }),
  b: await EngineProcess.start({
    natsUrl: nats.url,
    shards: '0',
    role: 'replica',
    args: ['--engine-id', 'b', ...LEASE],
  }),
};
try {
  const client = new EngineClient(nc, 2_000);
  const auctions: number[] = [];
  for (let i = 0; i < 20; i++)
    auctions.push(
      (
        (await client.sendOne(0, {
          type: 'create',
          sellerId: 1,
          startingPrice: 100,
          endsAt: Date.now() + 3_600_000,
        })) as CreateOutcome
      ).auctionId,
    );
  const load = new BidLoad(nc, 0, auctions, 1_000);
  load.start(Number(values.clients));
  let leader: 'a' | 'b' = 'a';
  for (let kill = 1; kill <= KILLS; kill++) {
    await load.untilAnswered(500);
    const standby: 'a' | 'b' = leader === 'a' ? 'b' : 'a';
    const tookOver = nodes[standby].waitForRole(0, 'serving');
    const before = load.outagesMs.length;
    await nodes[leader].kill();
    await tookOver;
    await load.untilAnswered(200);
    say(
      `  kill ${kill}: ${leader} SIGKILLed, ${standby} serving; clients saw ${load.outagesMs.slice(before).join(' + ') || 0} ms without a primary`,
    );
    await nodes[leader].launch();
    leader = standby;
  }
  await load.untilAnswered(500);
  await load.stop();

  const { acceptedBids } = await replayShard(nc, 0);
  const ackedLost = load.acked.filter((b) => !acceptedBids.get(`${b.bidderId}/${b.bidId}`)?.includes(b.seq)).length;
  const acceptedTwice =
    load.acceptedTwice().length + [...acceptedBids.values()].filter((seqs) => seqs.length > 1).length;
  const outages = [...load.outagesMs].sort((x, y) => x - y);
  const result = {
    kills: KILLS,
    unavailableMsMax: outages[outages.length - 1] ?? 0,
    unavailableMsP50: outages[Math.floor(outages.length / 2)] ?? 0,
    ackedLost,
    acceptedTwice,
  };
  say(`  ${load.acked.length} bids acknowledged over ${KILLS} kills; outages (ms): ${outages.join(', ')}`);
  saveResult(values.out, 'failover', {
    leaseTtlMs: Number(values['lease-ttl-ms']),
    acked: load.acked.length,
    outagesMs: outages,
    ...result,
  });
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await nc.close();
  await Promise.all([nodes.a.close(), nodes.b.close()]);
  await nats.close();
}
