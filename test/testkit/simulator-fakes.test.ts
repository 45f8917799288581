import t from 'tap';
import { AuctionCore } from '../../engine/core/index.js';
import { encodeLog, type LogBatch } from '../../protocol/index.js';
import { DeposedError, RevisionConflictError, type BusRequest, type LeaseEntry } from '../../shard/ports.js';
import { MemoryBus } from '../../testkit/simulator/memory-bus.js';
import { MemoryKv, type KvWriteFault } from '../../testkit/simulator/memory-lease-store.js';
import { FOLLOW_WINDOW, MemoryLog, type AppendFault, type ReadFault } from '../../testkit/simulator/memory-log.js';
import { MemorySnapshots } from '../../testkit/simulator/memory-snapshots.js';
import { Random } from '../../testkit/simulator/random.js';
import { Scheduler } from '../../testkit/simulator/scheduler.js';

const SHARD = 3;
const CONFIG = { shard: SHARD, auctionsMax: 8, idempotencyEntriesMax: 64 };

type Outcome<T> = { ok: T } | { error: unknown } | 'pending';

/**
 * Runs the scheduler until `promise` settles or nothing is left to run (or,
 * with `forMs`, for that long whatever happens) and says how it settled.
 */
async function settle<T>(scheduler: Scheduler, promise: Promise<T>, forMs?: number): Promise<Outcome<T>> {
  let outcome: Outcome<T> = 'pending';
  promise.then(
    (ok) => (outcome = { ok }),
    (error: unknown) => (outcome = { error }),
  );
  await new Promise((resolve) => setImmediate(resolve));
  if (forMs !== undefined) await scheduler.runFor(forMs);
  else while (outcome === 'pending' && (await scheduler.step()));
  return outcome;
}

const errorOf = (outcome: Outcome<unknown>): Error => {
  if (outcome === 'pending' || !('error' in outcome))
    throw new Error(`expected a rejection, got ${JSON.stringify(outcome)}`);
  return outcome.error as Error;
};

const batchBytes = (writer: string, t = 0): Uint8Array =>
  encodeLog({ v: 1, shard: SHARD, writer, t, events: [] } satisfies LogBatch);

/** A MemoryLog whose faults come from queues the test fills. */
function makeLog(scheduler: Scheduler, latencyMs = () => 1) {
  const appendFaults: AppendFault[] = [];
  const readFaults: ReadFault[] = [];
  const log = new MemoryLog(scheduler, {
    shard: SHARD,
    config: CONFIG,
    latencyMs,
    appendFault: () => appendFaults.shift() ?? 'ok',
    readFault: () => readFaults.shift() ?? 'ok',
  });
  return { log, appendFaults, readFaults };
}

t.test('random: the same seed draws the same sequence, forks included', (t) => {
  const draw = (random: Random) => Array.from({ length: 50 }, () => random.int(-1_000, 1_000_000));
  const a = new Random(42);
  const b = new Random(42);
  t.same(draw(a), draw(b), 'two streams of one seed agree');
  t.notSame(draw(new Random(42)), draw(new Random(43)), 'another seed draws otherwise');
  const childA = a.fork();
  const childB = b.fork();
  t.same(draw(childA), draw(childB), 'forks at the same point agree');
  t.notSame(draw(a.fork()), draw(a), 'a fork is another stream than its parent');

  const r = new Random(7);
  const seen = new Set<number>();
  for (let i = 0; i < 300; i++) seen.add(r.int(1, 3));
  t.same([...seen].sort(), [1, 2, 3], 'int bounds are inclusive');
  t.ok(
    Array.from({ length: 100 }, () => r.chance(0)).every((x) => !x),
    'chance(0) never',
  );
  t.ok(
    Array.from({ length: 100 }, () => r.chance(1)).every((x) => x),
    'chance(1) always',
  );
  const heads = Array.from({ length: 2_000 }, () => r.chance(0.5)).filter((x) => x).length;
  t.ok(heads > 850 && heads < 1_150, `chance(0.5) about half the time (${heads} of 2000)`);
  t.equal(new Random(9).pick(['a', 'b', 'c']), new Random(9).pick(['a', 'b', 'c']), 'pick is deterministic');
  t.throws(() => r.pick([]), 'pick from nothing throws');
  t.end();
});

t.test('scheduler: time then insertion order; microtasks settle between events', async (t) => {
  const s = new Scheduler(1_000);
  const ran: string[] = [];
  const node = s.node('a');
  s.schedule(node, 10, () => ran.push(`late@${s.now}`));
  s.schedule(null, 5, () => ran.push(`first5@${s.now}`));
  s.schedule(node, 5, () => ran.push(`second5@${s.now}`));
  s.schedule(null, 0, () => {
    ran.push(`now@${s.now}`);
    void Promise.resolve()
      .then(() => Promise.resolve())
      .then(() => ran.push('chain settled'));
  });
  t.equal(s.pending(), 4);
  while (await s.step());
  t.same(ran, ['now@1000', 'chain settled', 'first5@1005', 'second5@1005', 'late@1010']);
  t.equal(s.stepsRun, 4);
  t.equal(await s.step(), false, 'an empty queue steps no more');

  const cancelled: string[] = [];
  const cancel = s.schedule(null, 1, () => cancelled.push('x'));
  cancel();
  t.equal(s.pending(), 0, 'a cancelled event is not pending');
  await s.runFor(100);
  t.same(cancelled, [], 'a cancelled event never runs');
  t.equal(s.now, 1_110, 'runFor moves time even with nothing to run');
});

t.test('scheduler: soon runs after what is already due; after(0) waits a millisecond like Node', async (t) => {
  const s = new Scheduler(0);
  const clock = s.clockFor(s.node('a'));
  const ran: string[] = [];
  s.schedule(null, 0, () => {
    clock.after(0, () => ran.push(`after0@${s.now}`));
    clock.soon(() => ran.push(`soon@${s.now}`));
    ran.push('first');
  });
  s.schedule(null, 0, () => ran.push('already due'));
  await s.runFor(10);
  t.same(ran, ['first', 'already due', 'soon@0', 'after0@1']);
  const slept = settle(
    s,
    clock.sleep(25).then(() => s.now),
  );
  t.same(await slept, { ok: 35 });
});

t.test('scheduler: a paused node waits and resumes in order; kill drops its events', async (t) => {
  const s = new Scheduler(0);
  const a = s.node('a');
  const ran: string[] = [];
  s.schedule(a, 5, () => ran.push(`a1@${s.now}`));
  s.schedule(a, 10, () => ran.push(`a2@${s.now}`));
  s.schedule(a, 40, () => ran.push(`a3@${s.now}`));
  s.schedule(null, 7, () => ran.push(`world@${s.now}`));
  s.pause(a);
  t.ok(a.paused);
  await s.runUntil(20);
  t.same(ran, ['world@7'], 'nothing of the paused node ran');
  t.equal(s.pending(), 3, 'its events are still pending');
  s.schedule(a, 0, () => ran.push(`a4@${s.now}`));
  s.resume(a);
  await s.runUntil(50);
  t.same(
    ran,
    ['world@7', 'a1@20', 'a2@20', 'a4@20', 'a3@40'],
    'deferred events ran at resume, in order; later ones on time',
  );

  const b = s.node('b');
  const clock = s.clockFor(b);
  const ticks: number[] = [];
  clock.every(10, () => ticks.push(s.now));
  await s.runUntil(75);
  s.pause(b);
  await s.runUntil(200);
  s.resume(b);
  await s.runUntil(215);
  t.same(ticks, [60, 70, 200, 210], 'a repeating timer fires once for all the periods it missed');

  const c = s.node('c');
  s.schedule(c, 5, () => ran.push('c dead'));
  s.pause(c);
  await s.runUntil(230);
  const before = s.pending();
  s.kill(c);
  t.ok(c.dead);
  t.equal(s.pending(), before - 1, 'its deferred event is gone');
  s.schedule(c, 1, () => ran.push('c later'));
  await s.runUntil(300);
  t.notOk(
    ran.some((r) => r.startsWith('c ')),
    'a dead node runs nothing, deferred or later',
  );
  const c2 = s.node('c');
  t.not(c2, c, 'a restart is a new incarnation');
  t.notOk(c2.dead, 'the new incarnation lives');
  t.ok(c.dead, 'the old one stays dead');
});

t.test('scheduler: the queue is bounded; cancelled events make room', (t) => {
  const s = new Scheduler(0, 10);
  const cancels = Array.from({ length: 10 }, () => s.schedule(null, 1, () => {}));
  t.throws(() => s.schedule(null, 1, () => {}), /event queue is full \(10 events\)/);
  cancels[0]();
  t.doesNotThrow(() => s.schedule(null, 1, () => {}), 'a cancelled event no longer counts');
  t.equal(s.pending(), 10);
  t.end();
});

t.test('scheduler: an exception in an event propagates out of step', async (t) => {
  const s = new Scheduler(0);
  s.schedule(null, 1, () => {
    throw new Error('bug found');
  });
  await t.rejects(s.step(), /bug found/);
});

t.test('log: the expected-sequence fence and msg id duplicates', async (t) => {
  const s = new Scheduler(0);
  const { log } = makeLog(s);
  const a = log.port(s.node('a'));
  const b = log.port(s.node('b'));
  t.same(await settle(s, a.append(batchBytes('wa'), 0, 'wa', 500)), { ok: { seq: 1 } });
  t.equal(log.entries()[0].msgId, `${SHARD}:1:wa`, 'msg id as engine/log.ts makes it');
  t.equal(log.entries()[0].batch.writer, 'wa', 'the stored batch is decoded');

  const fenced = errorOf(await settle(s, b.append(batchBytes('wb'), 0, 'wb', 500)));
  t.ok(fenced instanceof DeposedError, 'a writer behind the stream is deposed');
  t.equal(log.lastSeq, 1, 'nothing stored past the fence');

  const duplicate = errorOf(await settle(s, a.append(batchBytes('wa'), 0, 'wa', 500)));
  t.notOk(duplicate instanceof DeposedError, 'a duplicate is not taken for a fence');
  t.match(duplicate.message, /duplicate/);
  t.equal(log.lastSeq, 1);

  await s.runFor(121_000);
  t.ok(
    errorOf(await settle(s, a.append(batchBytes('wa'), 0, 'wa', 500))) instanceof DeposedError,
    'past the duplicate window the id is forgotten; the fence remains',
  );
  t.same(await settle(s, b.append(batchBytes('wb'), 1, 'wb', 500)), { ok: { seq: 2 } });
  t.same(
    log.entries().map((e) => e.streamSeq),
    [1, 2],
    'sequences are gapless',
  );
});

t.test('log: pipelined appends of one copy arrive in order whatever their latencies', async (t) => {
  const s = new Scheduler(0);
  const latencies = [10, 1];
  const { log } = makeLog(s, () => latencies.shift() ?? 1);
  const a = log.port(s.node('a'));
  const first = a.append(batchBytes('wa', 0), 0, 'wa', 500);
  const second = a.append(batchBytes('wa', 1), 1, 'wa', 500);
  t.same(
    await settle(s, Promise.all([first, second])),
    { ok: [{ seq: 1 }, { seq: 2 }] },
    'the second did not overtake the first (one connection keeps order)',
  );
});

t.test('log: appends that time out, landed or lost', async (t) => {
  const s = new Scheduler(0);
  const { log, appendFaults } = makeLog(s);
  const a = log.port(s.node('a'));
  appendFaults.push('landed-timeout', 'lost-timeout');
  const calledAt = s.now;
  const landed = errorOf(await settle(s, a.append(batchBytes('wa'), 0, 'wa', 300)));
  t.equal(landed.message, 'timeout');
  t.equal(s.now, calledAt + 300, 'the timeout runs from the call');
  t.equal(log.lastSeq, 1, 'landed: stored although the caller heard nothing');
  const lost = errorOf(await settle(s, a.append(batchBytes('wa'), 1, 'wa', 300)));
  t.equal(lost.message, 'timeout');
  t.equal(log.lastSeq, 1, 'lost: not stored');

  const slow = makeLog(s, () => 400).log.port(s.node('slow'));
  t.equal(
    errorOf(await settle(s, slow.append(batchBytes('ws'), 0, 'ws', 300))).message,
    'timeout',
    'an answer slower than the timeout is a timeout too',
  );
});

t.test('log: a paused writer hears its answer only after resume; a dead one never', async (t) => {
  const s = new Scheduler(0);
  const { log } = makeLog(s);
  const node = s.node('a');
  const a = log.port(node);
  const answer = a.append(batchBytes('wa'), 0, 'wa', 10_000);
  s.schedule(null, 0, () => s.pause(node));
  s.schedule(null, 500, () => s.resume(node));
  let answeredAt = -1;
  t.same(
    await settle(
      s,
      answer.then((ack) => ((answeredAt = s.now), ack)),
    ),
    { ok: { seq: 1 } },
  );
  t.equal(log.entries()[0].storedAt, 1, 'the server stored it while the writer was stopped');
  t.equal(answeredAt, 500, 'the answer arrived at resume');

  const doomed = s.node('doomed');
  const dead = log.port(doomed).append(batchBytes('wd'), 1, 'wd', 100);
  s.schedule(null, 0, () => s.kill(doomed));
  t.equal(await settle(s, dead), 'pending', 'a dead caller hears nothing, not even its timeout');
  t.equal(log.lastSeq, 2, 'its request was on the wire already and landed');
});

t.test('log: follow delivers what is stored, then what lands, with pending; stop ends the loop', async (t) => {
  const s = new Scheduler(0);
  const { log } = makeLog(s);
  const writer = log.port(s.node('w'));
  for (let seq = 0; seq < 3; seq++) await settle(s, writer.append(batchBytes('w', seq), seq, 'w', 500));
  const node = s.node('r');
  const follower = await settle(s, log.port(node).follow(1));
  if (follower === 'pending' || !('ok' in follower)) throw new Error('follow failed');
  const seen: { streamSeq: number; pending: number; t: number }[] = [];
  const loop = (async () => {
    for await (const m of follower.ok.messages) seen.push({ streamSeq: m.streamSeq, pending: m.pending, t: m.batch.t });
    return 'ended';
  })();
  await s.runFor(20);
  t.same(
    seen,
    [
      { streamSeq: 2, pending: 1, t: 1 },
      { streamSeq: 3, pending: 0, t: 2 },
    ],
    'stored messages after the start, with what follows each',
  );
  await settle(s, writer.append(batchBytes('w', 3), 3, 'w', 500));
  await s.runFor(20);
  t.same(seen.at(-1), { streamSeq: 4, pending: 0, t: 3 }, 'a new message as it lands');
  s.schedule(node, 0, () => void follower.ok.stop());
  t.same(await settle(s, loop), { ok: 'ended' }, 'stop ends the for-await loop normally');
  await settle(s, writer.append(batchBytes('w', 4), 4, 'w', 500));
  await s.runFor(20);
  t.equal(seen.length, 3, 'nothing after stop');
});

t.test('log: killConsumers makes a follower throw; read and its faults', async (t) => {
  const s = new Scheduler(0);
  const { log, readFaults } = makeLog(s);
  const writer = log.port(s.node('w'));
  for (let seq = 0; seq < 3; seq++) await settle(s, writer.append(batchBytes('w', seq), seq, 'w', 500));
  const reader = log.port(s.node('r'));
  const follower = await settle(s, reader.follow(3));
  if (follower === 'pending' || !('ok' in follower)) throw new Error('follow failed');
  const loop = (async () => {
    for await (const _ of follower.ok.messages);
    return 'ended';
  })();
  await s.runFor(10);
  log.killConsumers();
  t.match(errorOf(await settle(s, loop)).message, /consumer deleted/, 'the waiting read throws');

  const read = async (after: number, to: number) => {
    const got: number[] = [];
    for await (const m of reader.read(after, to)) got.push(m.streamSeq);
    return got;
  };
  t.same(await settle(s, read(0, 3)), { ok: [1, 2, 3] }, 'read (0, 3]');
  t.same(await settle(s, read(1, 2)), { ok: [2] }, 'read (1, 2]');
  t.same(await settle(s, read(2, 2)), { ok: [] }, 'an empty range');
  readFaults.push('error');
  t.match(errorOf(await settle(s, read(0, 3))).message, /no responders/, 'a read can fail to open');
  readFaults.push('error');
  t.match(errorOf(await settle(s, reader.lastStreamSeq())).message, /no responders/);
  t.same(await settle(s, reader.lastStreamSeq()), { ok: 3 });
  readFaults.push('error');
  t.match(errorOf(await settle(s, reader.follow(0))).message, /no responders/, 'opening a follower can fail');
  t.same(await settle(s, reader.ensure(CONFIG, 1)), { ok: { config: CONFIG, lastStreamSeq: 3, created: false } });
});

t.test('log: a follower that does not read holds a bounded window, not the log', async (t) => {
  const s = new Scheduler(0);
  const { log } = makeLog(s);
  const writer = log.port(s.node('w'));
  for (let seq = 0; seq < 700; seq++) await settle(s, writer.append(batchBytes('w', seq), seq, 'w', 500));
  const opened = s.stepsRun;
  const follower = await settle(s, log.port(s.node('r')).follow(0));
  if (follower === 'pending' || !('ok' in follower)) throw new Error('follow failed');
  await s.runFor(10);
  t.equal(s.pending(), 0, 'nothing more is on its way');
  t.ok(
    s.stepsRun - opened <= FOLLOW_WINDOW + 2,
    `only the window was delivered (${s.stepsRun - opened} events for 700 messages)`,
  );
  const iterator = follower.ok.messages[Symbol.asyncIterator]();
  const first = await settle(s, iterator.next());
  t.match(first, { ok: { done: false, value: { streamSeq: 1, pending: 699 } } });
  let last = 1;
  for (let i = 0; i < 699; i++) {
    const next = await settle(s, iterator.next());
    if (next !== 'pending' && 'ok' in next && !next.ok.done) last = next.ok.value.streamSeq;
  }
  t.equal(last, 700, 'reading moves the window along to the end');
});

t.test('kv: compare-and-set writes on one bucket revision; watch order', async (t) => {
  const s = new Scheduler(0);
  const kv = new MemoryKv(s);
  const node = s.node('a');
  const store = kv.port(node);
  const v = (text: string) => new TextEncoder().encode(text);
  t.same(await settle(s, store.get('k')), { ok: null }, 'a key never written');
  const watched: LeaseEntry[] = [];
  const watch = await settle(
    s,
    store.watch('k', (entry) => watched.push(entry)),
  );
  if (watch === 'pending' || !('ok' in watch)) throw new Error('watch failed');

  t.same(await settle(s, store.create('k', v('one'))), { ok: 1 });
  t.ok(
    errorOf(await settle(s, store.create('k', v('two')))) instanceof RevisionConflictError,
    'create on a key with a value conflicts',
  );
  t.ok(
    errorOf(await settle(s, store.update('k', v('two'), 7))) instanceof RevisionConflictError,
    'update on another revision conflicts',
  );
  t.same(await settle(s, store.create('other', v('x'))), { ok: 2 }, 'one revision counter for the bucket');
  t.same(await settle(s, store.update('k', v('two'), 1)), { ok: 3 });
  t.ok(
    errorOf(await settle(s, store.delete('k', 1))) instanceof RevisionConflictError,
    'delete on another revision conflicts',
  );
  t.same(await settle(s, store.delete('k', 3)), { ok: undefined });
  t.same(await settle(s, store.get('k')), { ok: { revision: 4, value: null } }, 'a deleted key');
  t.same(await settle(s, store.create('k', v('three'))), { ok: 5 }, 'a deleted key may be created again');
  await s.runFor(10);
  t.same(
    watched.map((e) => [e.revision, e.value && new TextDecoder().decode(e.value)]),
    [
      [1, 'one'],
      [3, 'two'],
      [4, null],
      [5, 'three'],
    ],
    'the watcher heard every change of its key, in order',
  );
  t.same(
    kv.history('k').map((r) => r.revision),
    [1, 3, 4, 5],
  );
  watch.ok.stop();
  await settle(s, store.update('k', v('four'), 5));
  await s.runFor(10);
  t.equal(watched.length, 4, 'nothing after stop');
});

t.test('kv: writes that time out, applied or lost', async (t) => {
  const s = new Scheduler(0);
  const faults: KvWriteFault[] = [];
  const kv = new MemoryKv(s, { writeFault: () => faults.shift() ?? 'ok' });
  const store = kv.port(s.node('a'));
  const value = new Uint8Array([1]);
  faults.push('applied-timeout');
  const start = s.now;
  t.equal(errorOf(await settle(s, store.create('k', value))).message, 'timeout');
  t.equal(s.now, start + 1_000, 'the default timeout');
  t.same(
    kv.history('k').map((r) => r.revision),
    [1],
    'applied although the caller heard nothing',
  );
  faults.push('lost-timeout');
  const again = s.now;
  t.equal(errorOf(await settle(s, store.update('k', value, 1, 250))).message, 'timeout');
  t.equal(s.now, again + 250, "the update's own timeout");
  t.same(
    kv.history('k').map((r) => r.revision),
    [1],
    'lost: not applied',
  );
});

t.test('bus: no responders, first responder wins, timeout, unsubscribed and dead subscribers', async (t) => {
  const s = new Scheduler(0);
  const bus = new MemoryBus(s);
  const client = bus.client(s.node('client'));
  const data = new Uint8Array([7]);
  const none = errorOf(await settle(s, client.request('cmd', data, 1_000))) as Error & { code?: string };
  t.equal(none.code, '503', 'no subscriber: no responders');

  const fastNode = s.node('fast');
  const slowNode = s.node('slow');
  const slowClock = s.clockFor(slowNode);
  const got: string[] = [];
  const fast = bus.port(fastNode).serve('cmd', (msg: BusRequest) => {
    got.push(`fast ${msg.data[0]}`);
    t.ok(msg.reply, 'a request carries a reply subject');
    t.equal(msg.respond(new Uint8Array([1])), true);
  });
  bus.port(slowNode).serve('cmd', (msg) => {
    got.push('slow');
    slowClock.after(5, () => msg.respond(new Uint8Array([2])));
  });
  t.same(await settle(s, client.request('cmd', data, 1_000)), { ok: new Uint8Array([1]) }, 'the first answer wins');
  await s.runFor(50);
  t.same(got.sort(), ['fast 7', 'slow'], 'every subscriber got the request');

  fast.unsubscribe();
  s.pause(slowNode);
  s.schedule(null, 100, () => s.resume(slowNode));
  t.same(
    await settle(s, client.request('cmd', data, 1_000)),
    { ok: new Uint8Array([2]) },
    'a paused server answers after resume',
  );
  t.equal(got.filter((g) => g.startsWith('fast')).length, 1, 'an unsubscribed handler gets nothing');

  const silent = s.node('silent');
  bus.port(silent).serve('quiet', () => {});
  const start = s.now;
  const timedOut = errorOf(await settle(s, client.request('quiet', data, 300))) as Error & { code?: string };
  t.equal(timedOut.code, 'TIMEOUT');
  t.equal(s.now, start + 300);
  s.kill(silent);
  t.equal(
    (errorOf(await settle(s, client.request('quiet', data, 300))) as Error & { code?: string }).code,
    '503',
    'a dead subscriber is no responder',
  );
});

t.test('snapshots: survive a restart; a save not yet durable is lost on kill', async (t) => {
  const s = new Scheduler(0);
  const snapshots = new MemorySnapshots(s, { writeLatencyMs: () => 20 });
  const core = new AuctionCore(CONFIG);
  const create = (seq: number) =>
    core.apply(
      {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        reservePrice: 0,
        startsAt: 0,
        endsAt: 3_600_000,
        softCloseSeconds: 0,
      },
      seq,
      0,
    );
  create(1);
  const first = s.node('copy');
  snapshots.attach(first);
  t.same(await settle(s, snapshots.save(core.image(), { lastSeq: core.lastSeq, streamSeq: 10 })), {
    ok: { lastSeq: 1, streamSeq: 10 },
  });
  t.equal(s.now, 20, 'durable after the write latency');
  const hashAt1 = core.stateHash();
  create(2);
  const lost = snapshots.save(core.image(), { lastSeq: core.lastSeq, streamSeq: 11 });
  t.equal(await settle(s, lost, 10), 'pending', 'not durable yet');
  s.kill(first);
  t.equal(await settle(s, lost), 'pending', 'the save of a killed process never settles');

  const second = s.node('copy');
  snapshots.attach(second);
  const skipped: string[] = [];
  const loaded = snapshots.loadNewest(
    { auctionsMax: CONFIG.auctionsMax, idempotencyEntriesMax: CONFIG.idempotencyEntriesMax },
    (file) => skipped.push(file),
  );
  t.same(
    loaded?.meta,
    { lastSeq: 1, streamSeq: 10 },
    'the restarted copy finds the durable snapshot, not the lost one',
  );
  t.equal(loaded?.core.stateHash(), hashAt1, 'with the state it had');
  t.equal(loaded?.writtenAt, 20);
  t.same(skipped, []);

  for (let seq = 2; seq <= 4; seq++) {
    create(seq + 1);
    await settle(s, snapshots.save(core.image(), { lastSeq: core.lastSeq, streamSeq: 10 + seq }));
  }
  t.same(
    snapshots.files().map((f) => f.meta.lastSeq),
    [4, 5],
    'the newest two are kept',
  );
  t.equal(snapshots.loadNewest(CONFIG, () => {})?.meta.lastSeq, 5);
});
