import t from 'tap';
import fc from 'fast-check';
import { AuctionCore, decodeSnapshot, encodeSnapshot } from '../../../engine/core/index.js';
import { replay } from './driver.js';
import { config, run, SHARD, step } from './random-streams.js';

t.test('the fast core and the naive reference agree on every command of random streams', (t) => {
  let commands = 0;
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 250, size: 'max' }), config, (steps, cfg) => {
      const result = run(steps, cfg);
      commands += result.log.length;
      if (result.failures.length) throw new Error(result.failures.slice(0, 5).join('\n'));
    }),
    { numRuns: 300 },
  );
  t.ok(commands > 10_000, `compared ${commands} commands`);
  t.end();
});

t.test('snapshot at any point + replay of the rest = the uninterrupted run', (t) => {
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 200, size: 'max' }), config, fc.nat(), (steps, cfg, cut) => {
      const whole = run(steps, cfg, false);
      const at = cut % (whole.log.length + 1);
      const prefix = replay(
        whole.log.slice(0, at),
        new AuctionCore({ shard: SHARD, auctionsMax: cfg.auctionsMax, idempotencyEntriesMax: cfg.rememberMax }),
      );
      const restored = decodeSnapshot(encodeSnapshot(prefix), {
        auctionsMax: cfg.auctionsMax,
        idempotencyEntriesMax: cfg.rememberMax,
      });
      restored.verify();
      if (restored.stateHash() !== prefix.stateHash()) throw new Error(`restore changed the hash at ${at}`);
      for (const { seq, t: time, command } of whole.log.slice(at)) {
        const again = restored.apply(command, seq, time);
        if (JSON.stringify(again) !== JSON.stringify(whole.outcomes[seq - 1]))
          throw new Error(`replay diverged at #${seq}`);
      }
      if (restored.stateHash() !== whole.core.stateHash())
        throw new Error(`hash differs after cut ${at} of ${whole.log.length}`);
      if (restored.lastSeq !== whole.core.lastSeq) throw new Error('sequence differs');
      if (restored.nextDueAt() !== whole.core.nextDueAt()) throw new Error('next timer differs');
    }),
    { numRuns: 200 },
  );
  t.pass('200 random cuts matched');
  t.end();
});

t.test('the state hash tells different states apart', (t) => {
  const a = run([{ kind: 'create', seller: 1, start: 100, reserve: 0, startIn: 0, duration: 1_000, soft: 0 }], {
    auctionsMax: 8,
    rememberMax: 8,
  });
  const b = run([{ kind: 'create', seller: 1, start: 101, reserve: 0, startIn: 0, duration: 1_000, soft: 0 }], {
    auctionsMax: 8,
    rememberMax: 8,
  });
  t.not(a.core.stateHash(), b.core.stateHash());
  t.end();
});
