import t from 'tap';
import { watchForStalledPull } from '../../audit/consumer-stall.js';

/**
 * Runs a watch whose stream gives `answers` in order (the last one repeated);
 * resolves at its stall or after `calls` questions. `deliverWhileAsked`: a
 * message arrives while each question is out (the pull is alive).
 */
function watch(answers: (number | null)[], calls: number, deliverWhileAsked = false) {
  let delivered = 0;
  let asked = 0;
  const stalls: { behind: number; quietMs: number }[] = [];
  // The watch's timer does not hold the process open (it is unref'd): this one does, until the end.
  const alive = setInterval(() => undefined, 1_000);
  return new Promise<{ stalls: typeof stalls; asked: number }>((resolve) => {
    const stop = watchForStalledPull({
      everyMs: 5,
      delivered: () => delivered,
      behind: () => {
        const answer = answers[Math.min(asked, answers.length - 1)];
        asked++;
        if (deliverWhileAsked) delivered++;
        if (asked >= calls) setImmediate(() => (stop(), resolve({ stalls, asked })));
        return Promise.resolve(answer);
      },
      onStall: (behind, quietMs) => {
        stalls.push({ behind, quietMs });
        stop();
        resolve({ stalls, asked });
      },
    });
  }).finally(() => clearInterval(alive));
}

t.test('a quiet pull with the stream ahead twice in a row is judged stalled', async (t) => {
  const { stalls, asked } = await watch([3, 4], 10);
  t.equal(asked, 2, 'judged at the second question');
  t.equal(stalls.length, 1);
  t.equal(stalls[0].behind, 4);
});

t.test('a stream that cannot answer is asked again, never judged', async (t) => {
  const { stalls, asked } = await watch([null], 20);
  t.equal(stalls.length, 0);
  t.equal(asked, 20);
});

t.test('a stream ahead once, then caught up: not stalled', async (t) => {
  const { stalls } = await watch([2, 0, 2, 0, 2, 0], 12);
  t.equal(stalls.length, 0);
});

t.test('a stream ahead, then unable to answer, then ahead: two quiet checks ahead still judge it', async (t) => {
  const { stalls } = await watch([5, null, 5], 10);
  t.equal(stalls.length, 1);
});

t.test('a message that arrives while the stream is asked keeps the pull alive', async (t) => {
  const { stalls } = await watch([7], 10, true);
  t.equal(stalls.length, 0);
});
