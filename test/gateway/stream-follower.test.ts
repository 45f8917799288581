import t, { type Test } from 'tap';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { auctionIdOf, streamName, subjects, type AuctionState, type EngineClient } from '../../protocol/index.js';
import { USER_FLAGS_BUCKET } from '../../protocol/names.js';
import { isWrongLastSequence } from '../../protocol/nats-errors.js';
import { shardFollowSettings } from '../../protocol/shard-stream.js';
import { StreamFollower, type FollowedMessage, type StreamFollowerOptions } from '../../gateway/stream-follower.js';
import { DisabledUsers } from '../../gateway/disabled-users.js';
import { LiveFeed } from '../../gateway/live/feed.js';
import type { LiveState } from '../../protocol/public.js';
import { NatsProxy, startNats, type ProxiedMessage } from '../../testkit/index.js';
import { Waiters } from '../../testkit/waiters.js';

/**
 * The gateway's stream follower (gateway/stream-follower.ts) on a real
 * nats-server with the cluster's users, provisioned as `make up` does: it
 * follows AUCTION_LOG_0 as the gateway's NATS user (no consumer rights), the
 * admin appends as an engine would. Faults come from a proxy that reads the
 * NATS protocol: it loses chosen re-published copies while the connection
 * stays up, holds answers back, or cuts the connection.
 */

const LOG = streamName(0);
const WAIT_MS = 10_000;
const logger = pino({ level: process.env.LOG_LEVEL ?? 'silent' });

const nats = await startNats({ auth: true, shards: 1 });
t.teardown(() => nats.close());
const admin = await connect(nats.connectOptions('admin'));
t.teardown(() => admin.close());
const adminJs = jetstream(admin);
const adminJsm = await jetstreamManager(admin);

const lastSeq = async () => (await adminJsm.streams.info(LOG)).state.last_seq;
const text = (m: FollowedMessage) => new TextDecoder().decode(m.data);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Appends as the engine does: each with the stream-level expected last sequence, pipelined. */
async function append(count: number, tag: string): Promise<number[]> {
  const last = await lastSeq();
  const acks = await Promise.all(
    range(1, count).map((i) =>
      adminJs.publish(subjects.log(0), `${tag} ${i}`, { expect: { lastSequence: last + i - 1 } }),
    ),
  );
  return acks.map((ack) => ack.seq);
}

/** The stream sequence of a re-published copy of the shard log as the proxy sees it, or null for anything else. */
function copyOf(message: ProxiedMessage): number | null {
  if (message.subject !== subjects.logged(0)) return null;
  const seq = /Nats-Sequence: (\d+)/.exec(message.headers)?.[1];
  return seq ? Number(seq) : null;
}

type Harness = Awaited<ReturnType<typeof follow>>;

/** A follower of AUCTION_LOG_0 on a gateway connection (through `via` when given), recording what it hands over. */
async function follow(
  t: Test,
  options: Partial<StreamFollowerOptions> & { via?: NatsProxy; connection?: NatsConnection } = {},
) {
  const { via, connection, ...rest } = options;
  const nc =
    connection ??
    (await connect({
      ...nats.connectOptions('gateway'),
      ...(via ? { servers: via.url } : {}),
      reconnectTimeWait: 50,
      maxReconnectAttempts: -1,
    }));
  if (!connection) t.teardown(() => nc.close());
  const seen: FollowedMessage[] = [];
  const resets: { from: number; to: number }[] = [];
  const waiters = new Waiters();
  const follower = new StreamFollower({
    nc,
    jsm: await jetstreamManager(nc),
    stream: LOG,
    republish: shardFollowSettings(0).republish,
    logger,
    checkEveryMs: 3_600_000, // no periodic check unless a test asks for one
    onMessage: (m) => {
      seen.push(m);
      waiters.wake();
    },
    onReset: (skipped) => {
      resets.push(skipped);
      waiters.wake();
    },
    ...rest,
  });
  t.teardown(() => follower.stop());
  const start = await follower.start();
  return {
    nc,
    follower,
    seen,
    resets,
    start,
    seqs: () => seen.map((m) => m.seq),
    /** Resolves once `check` holds after something was handed over or reset. */
    waitFor: (check: () => boolean, what: string) =>
      waiters.until(
        () => (check() ? true : undefined),
        WAIT_MS,
        () =>
          `${what}: delivered ${JSON.stringify(seen.map((m) => m.seq))}, resets ${JSON.stringify(resets)}, stats ${JSON.stringify(follower.stats)}`,
      ),
    /** Resolves once the follower has handed over `seq`, or reset past it. */
    reached: (seq: number) =>
      waiters.until(
        () => (seen.some((m) => m.seq >= seq) || resets.some((r) => r.to >= seq) ? true : undefined),
        WAIT_MS,
        () =>
          `sequence ${seq} never reached: delivered ${JSON.stringify(seen.map((m) => m.seq))}, resets ${JSON.stringify(resets)}, stats ${JSON.stringify(follower.stats)}`,
      ),
  };
}

/** The proxy's view of the server's messages to the follower, to wait on copies passing by. */
async function proxy(t: Test) {
  const p = await NatsProxy.start('127.0.0.1', nats.port);
  t.teardown(() => p.close());
  return p;
}

function assertDeliveredOnce(t: Test, f: Harness, from: number, to: number, what: string) {
  t.same(f.seqs(), range(from, to), `${what}: every message from ${from} to ${to}, in stream order, once`);
}

t.test(
  'delivers every message stored after its start, in stream order, exactly once; a rejected append never',
  async (t) => {
    await append(3, 'before');
    const f = await follow(t);
    t.equal(f.start, await lastSeq(), "it starts at the stream's last sequence");
    const first = await append(10, 'first');
    // A deposed writer's append (stale expected sequence) and a retried one (same msg id) store nothing.
    const stale = await adminJs.publish(subjects.log(0), 'rejected', { expect: { lastSequence: f.start } }).then(
      () => null,
      (error: unknown) => error,
    );
    t.ok(isWrongLastSequence(stale), 'the stale append is refused with "wrong last sequence"');
    const dup = await adminJs.publish(subjects.log(0), 'first again', { msgID: 'once' });
    const again = await adminJs.publish(subjects.log(0), 'duplicate', { msgID: 'once' });
    t.ok(again.duplicate, 'the repeated msg id is taken for a duplicate');
    const second = await append(10, 'second');
    await f.reached(second[second.length - 1]);
    assertDeliveredOnce(t, f, f.start + 1, second[second.length - 1], 'live');
    t.same(
      f.seen.map(text),
      [...range(1, 10).map((i) => `first ${i}`), 'first again', ...range(1, 10).map((i) => `second ${i}`)],
      'the stored payloads, nothing older than the start',
    );
    t.equal(f.seen[0].seq, first[0]);
    t.equal(f.seen[10].seq, dup.seq);
    t.ok(
      f.seen.every((m) => m.subject === subjects.log(0)),
      'each names the subject it was stored under',
    );
    t.notOk(
      f.seen.some((m) => text(m) === 'rejected' || text(m) === 'duplicate'),
      'neither the rejected nor the duplicate append was delivered',
    );
    t.match(f.follower.stats, { refilled: 0, resets: 0 }, 'all of it came live');
    t.equal(f.follower.lastSeq, second[second.length - 1], 'its position is the last one delivered');
  },
);

t.test('copies lost on the way are read back by direct gets when a later copy shows the gap', async (t) => {
  const p = await proxy(t);
  const f = await follow(t, { via: p });
  const lost = new Set([f.start + 2, f.start + 3]);
  p.dropWhen((m) => lost.has(copyOf(m) ?? 0));
  const seqs = await append(4, 'gap');
  await f.reached(seqs[3]);
  t.equal(p.dropped, 2, 'the proxy lost two copies (the connection stayed up)');
  assertDeliveredOnce(t, f, f.start + 1, seqs[3], 'with a gap');
  t.same(
    f.seen.map(text),
    range(1, 4).map((i) => `gap ${i}`),
    'the lost ones with their payloads',
  );
  t.match(f.follower.stats, { refilled: 2, gaps: 1, resets: 0 });
});

t.test(
  'a replica behind that answers "not found" is not believed: the leader is asked, nothing is skipped',
  async (t) => {
    // Direct gets are answered by any replica of an R3 stream; one restarted a moment ago does not have the
    // newest messages yet (make chaos SEED=102: two auctions' closes were skipped, every watcher kept an old
    // state). Here the server is real and so is every read; only the direct get of the lost message is
    // answered the way such a replica answers it, every time.
    const p = await proxy(t);
    const nc = await connect({ ...nats.connectOptions('gateway'), servers: p.url });
    t.teardown(() => nc.close());
    const real = await jetstreamManager(nc);
    let behind = 0;
    let lostSeq = 0;
    const jsm = {
      streams: real.streams,
      direct: {
        getMessage: (stream: string, query: { seq?: number }) => {
          if (query.seq === lostSeq) {
            behind++;
            return Promise.resolve(null);
          }
          return real.direct.getMessage(stream, query as Parameters<typeof real.direct.getMessage>[1]);
        },
      },
    } as unknown as typeof real;
    const f = await follow(t, { connection: nc, jsm });
    lostSeq = f.start + 2;
    p.dropWhen((m) => copyOf(m) === lostSeq);
    const seqs = await append(3, 'behind');
    await f.reached(seqs[2]);
    t.ok(behind >= 1, `the lagging answer was given (${behind} times)`);
    assertDeliveredOnce(t, f, f.start + 1, seqs[2], 'past a replica that is behind');
    t.same(f.resets, [], 'nothing reported skipped');
  },
);

t.test('a gap after which nothing arrives is found by the periodic check', async (t) => {
  const p = await proxy(t);
  const f = await follow(t, { via: p, checkEveryMs: 200 });
  const lastOne = f.start + 2;
  p.dropWhen((m) => copyOf(m) === lastOne);
  const seqs = await append(2, 'idle');
  await f.reached(seqs[1]);
  t.equal(p.dropped, 1, 'the last copy was lost, and nothing came after it');
  assertDeliveredOnce(t, f, f.start + 1, lastOne, 'after an idle gap');
  t.match(f.follower.stats, { refilled: 1, resets: 0 });
});

t.test('messages stored while the connection was away are read back after the reconnect', async (t) => {
  const p = await proxy(t);
  const f = await follow(t, { via: p });
  const statuses = (async () => {
    const seen: string[] = [];
    for await (const status of f.nc.status()) {
      seen.push(status.type);
      if (status.type === 'reconnect') return seen;
    }
    return seen;
  })();
  const disconnected = (async () => {
    for await (const status of f.nc.status()) if (status.type === 'disconnect') return;
  })();
  p.refuse(true);
  p.sever();
  await disconnected;
  const seqs = await append(3, 'away'); // stored, re-published to nobody of this follower
  p.refuse(false);
  t.ok((await statuses).includes('reconnect'), 'the client reconnected');
  await f.reached(seqs[2]);
  assertDeliveredOnce(t, f, f.start + 1, seqs[2], 'across a reconnect');
  t.match(f.follower.stats, { refilled: 3, resets: 0 });
});

t.test(
  'a full buffer drops copies behind a gap, which only widens the gap: still every message once, in order',
  async (t) => {
    const p = await proxy(t);
    const f = await follow(t, { via: p, bufferMax: 2 });
    const missing = f.start + 1;
    const passed = new Set<number>();
    const waiters = new Waiters();
    p.dropWhen((m) => {
      const seq = copyOf(m);
      if (seq !== null) {
        passed.add(seq);
        waiters.wake();
      }
      return seq === missing;
    });
    // The direct get that reads the gap back answers late: the copies behind the gap pile up meanwhile.
    p.holdWhen(
      (m) => m.subject.startsWith('_INBOX_gateway.') && m.headers.includes(`\r\nNats-Sequence: ${missing}\r\n`),
    );
    const seqs = await append(10, 'burst');
    const last = seqs[9];
    await waiters.until(
      () => (passed.has(last) ? true : undefined),
      WAIT_MS,
      () => `the proxy saw ${[...passed].join(',')}`,
    );
    await f.nc.flush(); // the follower has handled every copy the proxy passed before this round trip
    t.same(f.seen, [], 'nothing is delivered past the gap');
    t.equal(f.follower.stats.dropped, 7, 'two copies wait in the buffer, seven did not fit');
    p.release();
    await f.reached(last);
    assertDeliveredOnce(t, f, missing, last, 'after the buffer overflowed');
    t.same(
      f.seen.map(text),
      range(1, 10).map((i) => `burst ${i}`),
    );
    t.match(f.follower.stats, { refilled: 8, resets: 0 }, 'the lost one and the seven dropped ones were read back');
  },
);

t.test('a gap larger than the bound is reported through onReset, not read back', async (t) => {
  const p = await proxy(t);
  const f = await follow(t, { via: p, gapMax: 5 });
  const lost = new Set(range(f.start + 1, f.start + 8));
  p.dropWhen((m) => lost.has(copyOf(m) ?? 0));
  const seqs = await append(9, 'far');
  await f.reached(seqs[8]);
  t.same(
    f.resets,
    [{ from: f.start + 1, to: seqs[8] }],
    'eight lost: one reset covering up to the copy that showed the gap',
  );
  t.same(f.seen, [], 'nothing of the skipped range is delivered');
  const after = await append(1, 'after');
  await f.reached(after[0]);
  t.same(f.seqs(), after, 'then it goes on live from there');
  t.match(f.follower.stats, { refilled: 0, resets: 1 });

  await t.test('without refills, any gap is a reset', async (t) => {
    const q = await proxy(t);
    const g = await follow(t, { via: q, refill: false });
    q.dropWhen((m) => copyOf(m) === g.start + 1);
    const two = await append(2, 'no refill');
    await g.reached(two[1]);
    t.same(g.resets, [{ from: g.start + 1, to: two[1] }]);
    t.same(g.seen, []);
  });
});

t.test(
  'a stream that does not re-publish (made before RePublish) is followed by polling its last sequence',
  async (t) => {
    // Only the admin may make streams, and the gateway may read only the cluster's: this one is followed as the admin.
    await adminJsm.streams.add({ name: 'OLD_LOG', subjects: ['old.log'], allow_direct: true });
    t.teardown(() => adminJsm.streams.delete('OLD_LOG').catch(() => undefined));
    const f = await follow(t, {
      connection: admin,
      stream: 'OLD_LOG',
      republish: { src: 'old.log', dest: 'old.logged' },
      pollEveryMs: 100,
    });
    for (const i of [1, 2, 3]) await adminJs.publish('old.log', `old ${i}`);
    await f.reached(3);
    t.same(f.seqs(), [1, 2, 3], "every message, read by direct gets as the stream's last sequence moves");
    t.same(f.seen.map(text), ['old 1', 'old 2', 'old 3']);
    t.match(f.follower.stats, { refilled: 3, resets: 0 });
  },
);

t.test(
  "copies that arrive while the stream's position is being asked are not taken for a recreated stream",
  async (t) => {
    const p = await proxy(t);
    const f = await follow(t, { via: p });
    // Hold back the answer to the next STREAM.INFO (a reply without headers), so it is older than what follows.
    p.holdWhen((m) => m.subject.startsWith('_INBOX_gateway.') && m.headers === '');
    const checking = f.follower.check();
    await f.nc.flush(); // the server has answered the info request (the answer is held)
    const seqs = await append(3, 'meanwhile');
    await f.reached(seqs[2]);
    p.release();
    await checking;
    t.same(f.resets, [], 'no reset: the stream is not behind what was delivered before asking');
    assertDeliveredOnce(t, f, f.start + 1, seqs[2], 'while the position was asked');
  },
);

t.test(
  'a stream recreated behind the follower (its last sequence went backwards) resets it, then is followed anew',
  async (t) => {
    await adminJsm.streams.add({ name: 'REMADE', subjects: ['remade'], allow_direct: true });
    t.teardown(() => adminJsm.streams.delete('REMADE').catch(() => undefined));
    // No timer: each comparison with the stream is asked for, so the test decides what it sees.
    const f = await follow(t, {
      connection: admin,
      stream: 'REMADE',
      republish: { src: 'remade', dest: 'remade.copy' },
      pollEveryMs: 3_600_000,
    });
    for (const i of [1, 2, 3]) await adminJs.publish('remade', `old ${i}`);
    await f.follower.check();
    await f.reached(3);
    await adminJsm.streams.delete('REMADE');
    await adminJsm.streams.add({ name: 'REMADE', subjects: ['remade'], allow_direct: true });
    await adminJs.publish('remade', 'new 1');
    await f.follower.check();
    t.same(
      f.resets,
      [{ from: 1, to: 1 }],
      "the new stream's messages up to its last sequence are reported skipped: everything is read afresh",
    );
    await adminJs.publish('remade', 'new 2');
    await f.follower.check();
    await f.waitFor(() => f.seen.length === 4, "the new stream's next message");
    t.same(f.seen.map(text), ['old 1', 'old 2', 'old 3', 'new 2'], 'then it follows the new stream');
    t.equal(f.follower.lastSeq, 2);
  },
);

t.test(
  'the disabled users: the current set, live changes, and the whole set read again after a lost change',
  async (t) => {
    const flags = await new Kvm(adminJs).open(USER_FLAGS_BUCKET);
    await flags.put('u42', 'disabled before the gateway started');
    await flags.put('u43', 'disabled, then enabled again');
    await flags.delete('u43');
    const p = await proxy(t);
    const waiters = new Waiters();
    // What reached the gateway through the proxy, to wait on (an enabled user has no callback).
    const passed: ProxiedMessage[] = [];
    const lost = new Set<string>();
    p.dropWhen((m) => {
      if (lost.delete(m.subject)) return true;
      passed.push(m);
      waiters.wake();
      return false;
    });
    const nc = await connect({ ...nats.connectOptions('gateway'), servers: p.url });
    t.teardown(() => nc.close());
    const users = new DisabledUsers({ nc, jsm: await jetstreamManager(nc), logger });
    t.teardown(() => users.stop());
    const ended: number[] = [];
    await users.start((userId) => {
      ended.push(userId);
      waiters.wake();
    });
    t.ok(users.has(42), 'a user disabled before the start is known once start() resolves');
    t.notOk(users.has(43), 'a deleted key means enabled');
    const until = (check: () => boolean, what: string) =>
      waiters.until(
        () => (check() ? true : undefined),
        WAIT_MS,
        () => `${what}: ended ${ended.join(',')}`,
      );
    /** Once the proxy passed a message matching, and the gateway's connection handled everything before it. */
    const handled = async (match: (m: ProxiedMessage) => boolean, what: string) => {
      await until(() => passed.some(match), what);
      await nc.flush();
    };
    const deletion = (key: string) => (m: ProxiedMessage) =>
      m.headers.includes(`$KV.${USER_FLAGS_BUCKET}.${key}\r\n`) && m.headers.includes('KV-Operation: DEL');

    await flags.put('u7', 'disabled live');
    await until(() => users.has(7), 'u7 disabled live');
    await flags.delete('u7');
    await handled(
      (m) => m.subject === 'auction.user_flags.u7' && m.headers.includes('KV-Operation: DEL'),
      'u7 enabled live',
    );
    t.notOk(users.has(7), 'enabled again live');
    t.same(ended, [42, 7], 'each newly disabled user is reported once');

    // A change lost on the way; the next one shows the gap, and the whole set is read again.
    lost.add('auction.user_flags.u8');
    await flags.put('u8', 'its change is lost');
    await flags.put('u9', 'shows the gap');
    await until(() => users.has(8) && users.has(9), 'u8 and u9 disabled');
    t.same(p.dropped, 1, 'the change for u8 never reached the gateway');
    t.same(ended, [42, 7, 8, 9]);

    lost.add('auction.user_flags.u42');
    await flags.delete('u42');
    await flags.put('u10', 'shows the gap');
    // The set read again: the direct get of u42's key answers its deletion.
    await until(() => users.has(10), 'u10 disabled');
    await handled((m) => m.subject.startsWith('_INBOX_gateway.') && deletion('u42')(m), 'u42 read again');
    t.equal(p.dropped, 2, 'the deletion of u42 never reached the gateway live');
    t.notOk(users.has(42), 'u42 is enabled again: its lost deletion was read back with the set');
    t.ok(users.has(8) && users.has(9) && users.has(10), 'the others stay as they are');
  },
);

t.test("the live feed reads every watched auction of a shard again when the shard's follower resets", async (t) => {
  const p = await proxy(t);
  const nc = await connect({ ...nats.connectOptions('gateway'), servers: p.url });
  t.teardown(() => nc.close());
  // The shard's primary, as far as the feed asks it: one auction, whose version the test moves.
  const auctionId = auctionIdOf(1, 0);
  let version = 1;
  const asked: unknown[] = [];
  const state = (id: number): AuctionState => ({
    auctionId: id,
    sellerId: 1,
    status: 'open',
    price: 100 * version,
    leaderId: 0,
    bidCount: version - 1,
    startsAt: 0,
    endsAt: Date.now() + 3_600_000,
    softCloseSeconds: 0,
    version,
    hasReserve: false,
    reserveMet: false,
    winnerId: 0,
  });
  const engines = {
    control: (_shard: number, request: { auctionIds: number[] }) => {
      asked.push(request.auctionIds);
      return Promise.resolve({ states: request.auctionIds.map(state) });
    },
  } as unknown as EngineClient;
  const waiters = new Waiters();
  const published: LiveState[] = [];
  const live = new LiveFeed({
    nc,
    jsm: await jetstreamManager(nc),
    engines,
    logger,
    onStates: (states) => {
      published.push(...states);
      waiters.wake();
    },
  });
  t.teardown(() => live.stop());
  await live.start();
  t.match(await live.watch(auctionId), { auctionId, version: 1 }, 'watched: its first state from the primary');
  const start = live.positions()[0];
  // More copies are lost than a follower reads back (10,000): the gap is reset, not read.
  const lostUpTo = start + 10_001;
  p.dropWhen((m) => {
    const seq = copyOf(m);
    return seq !== null && seq <= lostUpTo;
  });
  version = 7;
  for (let sent = 0; sent < 10_001; sent += 1_000) await append(Math.min(1_000, 10_001 - sent), 'lost');
  await append(1, 'shows the gap');
  await waiters.until(
    () => (published.some((s) => s.version === 7) ? true : undefined),
    30_000,
    () => `published ${JSON.stringify(published)}; asked ${JSON.stringify(asked)}`,
  );
  t.equal(p.dropped, 10_001, 'the copies were lost on the way');
  t.same(
    asked,
    [[auctionId], [auctionId]],
    'the watched auction of the shard was read again after the reset, in one request',
  );
  t.match(
    live.current(auctionId),
    { version: 7, price: 700 },
    'and its fresher state replaces the one held, for its watchers',
  );
  t.equal(live.positions()[0], lostUpTo + 1, 'the follower goes on from after the gap');
  live.unwatch(auctionId);
});
