import t from 'tap';
import { LeaseBucketProbe, probeKey } from '../../replica/lease-bucket-probe.js';
import { RevisionConflictError, type LeaseEntry, type LeaseStorePort } from '../../shard/ports.js';
import { manualClock, settle } from '../../testkit/manual-clock.js';

type Outcome = 'ok' | 'conflict' | 'timeout';

/** A store whose every write ends as `next` says, recording the keys written. */
class ScriptedStore implements LeaseStorePort {
  next: Outcome = 'ok';
  readonly written: string[] = [];
  get(): Promise<LeaseEntry | null> {
    return Promise.resolve(null);
  }
  watch(): Promise<{ stop(): void }> {
    return Promise.resolve({ stop: () => undefined });
  }
  create(key: string) {
    return this.write(key);
  }
  update(key: string) {
    return this.write(key);
  }
  delete(key: string) {
    return this.write(key).then(() => undefined);
  }
  put(key: string) {
    return this.write(key);
  }
  private write(key: string): Promise<number> {
    this.written.push(key);
    if (this.next === 'conflict') return Promise.reject(new RevisionConflictError('wrong last sequence'));
    if (this.next === 'timeout') return Promise.reject(new Error('TIMEOUT'));
    return Promise.resolve(this.written.length);
  }
}

t.test(
  'writable since the first answered write; a failed write makes it not writable until the next answer',
  async (t) => {
    const store = new ScriptedStore();
    const clock = manualClock(5_000);
    const probe = new LeaseBucketProbe(store, clock, probeKey('p'), 200);
    t.equal(probe.writableSince(), null, 'nothing answered yet');
    probe.start();
    await settle();
    t.equal(probe.writableSince(), 5_000, 'the first probe was answered');
    t.same(store.written, ['probe.p']);

    clock.advance(200);
    await settle();
    t.equal(probe.writableSince(), 5_000, 'still writable since the first');

    store.next = 'timeout';
    clock.advance(200);
    await settle();
    t.equal(probe.writableSince(), null, 'a probe that timed out: not writable');
    await t.rejects(probe.update('shard.0', new Uint8Array(1), 3), /TIMEOUT/, 'a lease write failing counts too');
    t.equal(probe.writableSince(), null);

    store.next = 'conflict';
    await t.rejects(probe.update('shard.0', new Uint8Array(1), 3), RevisionConflictError);
    t.equal(probe.writableSince(), 5_400, 'a conflict is an answer: the bucket took the write');
    store.next = 'timeout';
    await t.rejects(probe.update('shard.0', new Uint8Array(1), 3), /TIMEOUT/);
    t.equal(probe.writableSince(), 5_400, 'one timeout right after an answer is a slow write: still writable');
    probe.stop();
  },
);

t.test('probes only while no other write was answered for a period', async (t) => {
  const store = new ScriptedStore();
  const clock = manualClock(5_000);
  const probe = new LeaseBucketProbe(store, clock, probeKey('engine one'), 200);
  probe.start();
  await settle();
  t.same(store.written, ['probe.engine_one'], 'one probe at start, its key made safe for NATS KV');
  for (let i = 0; i < 5; i++) {
    clock.advance(100);
    await probe.update('shard.0', new Uint8Array(1), 1); // a renewal every 100 ms
    clock.advance(100);
    await settle();
  }
  t.same(store.written.filter((k) => k.startsWith('probe.')).length, 1, 'renewals answered: no probe needed');
  clock.advance(200);
  await settle();
  t.equal(store.written.at(-1), 'probe.engine_one', 'quiet for a period: it probes');
  probe.stop();
  clock.advance(400);
  await settle();
  t.equal(store.written.at(-1), 'probe.engine_one');
  t.equal(store.written.filter((k) => k.startsWith('probe.')).length, 2, 'stopped: no more probes');
});
