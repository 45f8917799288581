import t from 'tap';
import { pino } from 'pino';
import { decode, encode } from '../../protocol/index.js';
import type { LeaseValue } from '../../protocol/cluster.js';
import { ShardLease } from '../../replica/lease.js';
import { RevisionConflictError, type LeaseBucketPort, type LeaseEntry } from '../../shard/ports.js';
import { manualClock, settle, type ManualClock } from '../../testkit/manual-clock.js';

/**
 * The lease's writes against a bucket whose answers the test releases by
 * hand (a compare-and-set store as NATS KV is: one revision counter, an
 * update names the revision it replaces). What is checked is the order of
 * the lease's own writes, which no real server could be made to interleave
 * on cue.
 */
class HeldBackStore implements LeaseBucketPort {
  private revision = 0;
  /** The watch's callback: the test delivers entries through it as a restarted NATS watch would. */
  watcher: ((entry: LeaseEntry) => void) | null = null;
  readonly entries = new Map<string, LeaseEntry>();
  /** Writes whose answers are held back until `answer()`. */
  private readonly held: (() => void)[] = [];
  holdAnswers = false;
  /** Every write fails as a timeout, unapplied (the bucket's stream has no leader). */
  refuseWrites = false;
  /** What writableSince() says (the probe's view; the test sets it). */
  writable: number | null = 0;

  writableSince() {
    return this.writable;
  }
  put(key: string, value: Uint8Array) {
    return this.write(key, value);
  }

  get(key: string) {
    return Promise.resolve(this.entries.get(key) ?? null);
  }
  watch(_key: string, onEntry: (entry: LeaseEntry) => void) {
    this.watcher = onEntry;
    return Promise.resolve({ stop: () => undefined });
  }
  create(key: string, value: Uint8Array) {
    if (this.entries.get(key)?.value) return Promise.reject(new RevisionConflictError(`${key} exists`));
    return this.write(key, value);
  }
  update(key: string, value: Uint8Array, revision: number) {
    if (this.refuseWrites) return Promise.reject(new Error('TIMEOUT'));
    const current = this.entries.get(key)?.revision ?? 0;
    if (current !== revision)
      return Promise.reject(new RevisionConflictError(`wrong last sequence: ${key} is at ${current}, not ${revision}`));
    return this.write(key, value);
  }
  delete(key: string, revision: number) {
    if ((this.entries.get(key)?.revision ?? 0) !== revision) return Promise.reject(new RevisionConflictError(key));
    this.entries.set(key, { revision: ++this.revision, value: null });
    return Promise.resolve();
  }
  /** Releases every held answer. */
  answer(): void {
    for (const release of this.held.splice(0)) release();
  }
  private write(key: string, value: Uint8Array): Promise<number> {
    // Applied at once, answered now or when released: a renewal on its way.
    const revision = ++this.revision;
    this.entries.set(key, { revision, value });
    if (!this.holdAnswers) return Promise.resolve(revision);
    return new Promise((resolve) => this.held.push(() => resolve(revision)));
  }
}

const silent = pino({ level: 'silent' });
/** Every clock tick is 250 ms, the renew period; the TTL is 1 s. */
const TICK_MS = 250;

/** Engine `id`'s lease of `shard` (writer `w-<id>`), its watch open. */
async function leaseOf(store: HeldBackStore, clock: ManualClock, shard: number, id: string): Promise<ShardLease> {
  const lease = new ShardLease(
    store,
    clock,
    shard,
    { engineId: id, writer: `w-${id}` },
    1_000,
    TICK_MS,
    silent,
    () => 0,
  );
  await lease.watch();
  return lease;
}

/** p's lease of `shard`, taken and renewing; `logOursAt` and `deciding` as its copy would report them. */
async function heldByP(
  store: HeldBackStore,
  clock: ManualClock,
  shard: number,
  logOursAt: () => number,
  deciding = () => true,
) {
  const lease = await leaseOf(store, clock, shard, 'p');
  const acquired = await lease.acquire();
  const lost: string[] = [];
  lease.keepRenewing((why) => lost.push(why), { deciding, logOursAt });
  return { lease, acquired, lost };
}

/** A lease held by p, renewing, with one renewal sent and applied and its answer still held back. */
async function renewalInFlight(shard: number) {
  const store = new HeldBackStore();
  const clock = manualClock();
  const { lease, acquired, lost } = await heldByP(store, clock, shard, () => 0);
  store.holdAnswers = true;
  clock.advance(TICK_MS);
  store.holdAnswers = false;
  return { store, lease, acquired, lost };
}

t.test('a hand-over while a renewal is on its way waits for it, and names the successor', async (t) => {
  const { store, lease, acquired, lost } = await renewalInFlight(0);
  t.ok(acquired, 'p took the free lease');
  const handOver = lease.handOver('r');
  store.answer();
  await handOver;
  const value = decode(store.entries.get('shard.0')!.value!) as LeaseValue;
  t.match(value, { engineId: 'r', writer: 'hand-over' }, 'the key names r: the hand-over used the renewed revision');
  t.same(lost, [], 'p never thought it lost the lease');
  t.equal(lease.held, false, 'and p holds it no more');
});

t.test('a release while a renewal is on its way deletes the renewed revision', async (t) => {
  const { store, lease, acquired, lost } = await renewalInFlight(3);
  t.ok(acquired);
  const release = lease.release();
  store.answer();
  await release;
  t.equal(store.entries.get('shard.3')!.value, null, 'the key is deleted, not left to expire');
  t.same(lost, []);
});

/** p holds `shard` (renewing nothing by itself), r watches it. */
async function holderAndWatcher(shard: number) {
  const store = new HeldBackStore();
  const clock = manualClock();
  const holder = await leaseOf(store, clock, shard, 'p');
  const acquired = await holder.acquire();
  const watcher = await leaseOf(store, clock, shard, 'r');
  return { store, clock, holder, acquired, watcher, key: `shard.${shard}` };
}

const ticks = (clock: ManualClock, n: number) => {
  for (let i = 0; i < n; i++) clock.advance(TICK_MS);
};

t.test('an entry the watch delivers again is no renewal: a holder that stopped renewing expires', async (t) => {
  const { store, clock, acquired, watcher, key } = await holderAndWatcher(5);
  t.ok(acquired, 'p holds the lease');
  t.notOk(watcher.expired(), 'just written: alive');
  // p is gone (it never renews); r's watch restarts every 250 ms and delivers the same entry each time.
  const entry = store.entries.get(key)!;
  for (let i = 0; i < 6; i++) {
    clock.advance(TICK_MS);
    store.watcher!(entry);
  }
  t.ok(watcher.expired(), 'after the TTL the lease has expired, however often the same revision came again');
  // A real renewal (a newer revision) makes it alive again.
  const renewed = await store.update(key, entry.value!, entry.revision);
  store.watcher!({ revision: renewed, value: entry.value });
  t.notOk(watcher.expired(), 'a newer revision is a renewal');
});

const leaseValue = (engineId: string, writer: string) =>
  encode({ engineId, writer, renewedAt: 0 } satisfies LeaseValue);

t.test(
  'a silent holder is not judged gone while the bucket takes no writes; a TTL after it takes them, it is',
  async (t) => {
    const { store, clock, acquired, watcher } = await holderAndWatcher(6);
    t.ok(acquired);
    store.writable = null; // the bucket elects a leader: r's own writes fail too
    ticks(clock, 12);
    t.notOk(watcher.expired(), '3 s without a renewal, but nobody could have renewed');
    store.writable = clock.now();
    ticks(clock, 4);
    t.notOk(watcher.expired(), 'the bucket takes writes again: the holder has a TTL to renew');
    ticks(clock, 1);
    t.ok(watcher.expired(), 'a TTL and a tick after that, silence means the holder is gone');
  },
);

t.test('a holder whose renewals fail serves on while the log acknowledges appends sent within a TTL', async (t) => {
  const store = new HeldBackStore();
  const clock = manualClock();
  let ackedSentAt = clock.now();
  const { lease, acquired, lost } = await heldByP(store, clock, 7, () => ackedSentAt);
  t.ok(acquired);
  store.refuseWrites = true;
  for (let i = 0; i < 12; i++) {
    clock.advance(TICK_MS);
    ackedSentAt = clock.now() - 100; // the log acknowledges appends as they go
    await settle();
  }
  t.same(lost, [], '3 s of failed renewals, the log taking every append: still serving');
  t.ok(lease.held);
  for (let i = 0; i < 3; i++) {
    clock.advance(TICK_MS);
    await settle();
  }
  t.same(lost, [], 'the newest acknowledged append was sent 850 ms ago: not yet');
  clock.advance(TICK_MS);
  await settle();
  t.same(lost, ['lease not renewed within its ttl'], 'a TTL after the last acknowledged append was sent, it stops');
  t.notOk(lease.held);
});

t.test('a holder that decides nothing (resyncing) keeps its lease through failed renewals', async (t) => {
  const store = new HeldBackStore();
  const clock = manualClock();
  let deciding = false;
  const { lease, acquired, lost } = await heldByP(
    store,
    clock,
    10,
    () => 0,
    () => deciding,
  );
  t.ok(acquired);
  store.refuseWrites = true; // the bucket and the log both lost their leaders; the copy resyncs
  for (let i = 0; i < 20; i++) {
    clock.advance(TICK_MS);
    await settle();
  }
  t.same(lost, [], '5 s of failed renewals while resyncing: still the holder');
  t.ok(lease.held);
  deciding = true; // resynced and serving, with no append acknowledged yet
  clock.advance(TICK_MS);
  await settle();
  t.same(lost, ['lease not renewed within its ttl'], 'deciding again with no renewal and no acknowledgement: it stops');
});

t.test('a holder that let its lease go at the TTL may take it back at once, unless someone wrote since', async (t) => {
  const store = new HeldBackStore();
  const clock = manualClock();
  const { lease, acquired, lost } = await heldByP(store, clock, 11, () => 0);
  t.ok(acquired);
  const key = 'shard.11';
  store.watcher!(store.entries.get(key)!); // its watch delivers its own write
  store.refuseWrites = true; // the bucket elects a leader: nobody's writes land
  store.writable = null;
  for (let i = 0; i < 6; i++) {
    clock.advance(TICK_MS);
    await settle();
  }
  t.same(lost, ['lease not renewed within its ttl']);
  t.ok(lease.expired(), 'the key still names this writer: no wait for a TTL of writable bucket');
  store.refuseWrites = false;
  store.writable = clock.now();
  t.ok(await lease.acquire(), 'taken back as soon as the bucket takes writes');
  lease.drop();
  await store.update(key, leaseValue('r', 'w-r'), store.entries.get(key)!.revision); // the watch has not told p
  t.notOk(await lease.acquire(), 'r wrote since: the compare-and-set fails');
  t.notOk(lease.expired(), 'and p now sees r, freshly renewed');
});

t.test('a holder whose watch shows another writer at a later revision stops at once', async (t) => {
  const store = new HeldBackStore();
  const clock = manualClock();
  const { lease, acquired, lost } = await heldByP(store, clock, 8, () => clock.now());
  t.ok(acquired);
  const ours = store.entries.get('shard.8')!;
  store.watcher!(ours);
  t.same(lost, [], 'its own revision changes nothing');
  const taken = await store.update('shard.8', leaseValue('r', 'w-r'), ours.revision);
  store.watcher!({ revision: taken, value: leaseValue('r', 'w-r') });
  t.same(lost, ['lease taken by another engine']);
  t.notOk(lease.held);
});

t.test(
  'a takeover refused as a conflict reads the key: a renewal the watch missed keeps the holder alive',
  async (t) => {
    const { store, clock, acquired, watcher, key } = await holderAndWatcher(9);
    t.ok(acquired);
    // p renews, but r's watch delivers nothing (it restarts after the bucket's election).
    const seen = store.entries.get(key)!;
    ticks(clock, 5);
    await store.update(key, leaseValue('p', 'w-p'), seen.revision);
    t.ok(watcher.expired(), 'by what r saw, p is silent');
    t.notOk(await watcher.acquire(), 'the compare-and-set finds the renewal');
    t.notOk(watcher.expired(), 'and r now counts from it');
    t.match(decode(store.entries.get(key)!.value!), { writer: 'w-p' }, 'the key still names p');
  },
);
