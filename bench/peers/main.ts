import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { PEER_DESIGNS, type PeerAuctions, type PeerDesign } from './design.js';
import { FrontDoor } from './front-door.js';
import { PostgresRowLockDesign } from './postgres-row-lock.js';
import { RedisLuaDesign } from './redis-lua.js';
import { createPeerStream, JetStreamFirstDesign, runDecider } from './jetstream-first.js';

/**
 * One peer process of `make bench`: a front door with one design behind it
 * (`--design`), or the JetStream-first design's decider (`--role decider`).
 * Prints `peer ready on port <port>` (the door) or `peer decider ready` once
 * it serves; stops on SIGTERM/SIGINT.
 */
const { values } = parseArgs({
  options: {
    design: { type: 'string' },
    role: { type: 'string', default: 'door' },
    secret: { type: 'string', default: '' },
    port: { type: 'string', default: '0' },
    auctions: { type: 'string', default: '2000' },
    'soft-close-ms': { type: 'string', default: '2000' },
    'ends-at': { type: 'string', default: '' },
    'database-url': { type: 'string', default: '' },
    'redis-url': { type: 'string', default: '' },
    'nats-url': { type: 'string', default: '' },
    'nats-user': { type: 'string', default: '' },
    'nats-pass': { type: 'string', default: '' },
  },
});
const design = values.design as (typeof PEER_DESIGNS)[number];
if (!PEER_DESIGNS.includes(design)) throw new Error(`--design must be one of ${PEER_DESIGNS.join(', ')}`);
const auctions: PeerAuctions = {
  count: Number(values.auctions),
  startingPrice: 100,
  endsAt: values['ends-at'] ? Number(values['ends-at']) : Date.now() + 6 * 3_600_000,
  softCloseMs: Number(values['soft-close-ms']),
};
const natsConnection = () =>
  connect({
    servers: values['nats-url'],
    ...(values['nats-user'] ? { user: values['nats-user'], pass: values['nats-pass'] } : {}),
  });

const stops: (() => Promise<void> | void)[] = [];
const stop = async () => {
  for (const s of stops.reverse()) await s();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());

if (values.role === 'decider') {
  const nc = await natsConnection();
  stops.push(() => nc.close());
  const deciding = runDecider(nc, auctions);
  process.stdout.write('peer decider ready\n');
  await deciding;
} else {
  let d: PeerDesign;
  if (design === 'postgres-row-lock') d = await PostgresRowLockDesign.open(values['database-url'], auctions);
  else if (design === 'jetstream-first') {
    const nc = await natsConnection();
    await createPeerStream(nc);
    d = await JetStreamFirstDesign.open(nc, String(process.pid));
  } else d = await RedisLuaDesign.open(values['redis-url'], auctions);
  const door = await FrontDoor.start(d, { secret: values.secret, port: Number(values.port) });
  stops.push(
    () => d.close(),
    () => door.close(),
  );
  process.stdout.write(`peer ${design}: ${d.description}\npeer ready on port ${door.port}\n`);
}
