import type { ChaosReport } from './run.js';
import { describeLost } from './leaders.js';
import { TARGET_KINDS } from './system.js';

/** Whether every checker passed: what the exit status of `make chaos` says. */
export function passed(r: ChaosReport): boolean {
  const v = r.verdict;
  return (
    v.ackedLost === 0 &&
    v.acceptedTwice === 0 &&
    v.ruleMismatches === 0 &&
    v.stateMismatches === 0 &&
    v.notificationsMissing === 0 &&
    v.errorAnswers === 0 &&
    v.undecided === 0 &&
    r.auditVerify.code === 0 &&
    r.auditBehind.length === 0 &&
    r.unexpectedExits.length === 0 &&
    v.outages.every((o) => o.maxOutageMs <= o.boundMs)
  );
}

/** The command that replays a run: the same seed and length give the same faults and client choices. */
export const replayCommand = (r: Pick<ChaosReport, 'seed' | 'durationMs' | 'targetKinds'>) =>
  `make chaos SEED=${r.seed} DURATION_S=${Math.round(r.durationMs / 1000)}` +
  (r.targetKinds.length === TARGET_KINDS.length ? '' : ` TARGETS=${r.targetKinds.join(',')}`);

/** The final line (issue 17 names its first keys); the extra ones say what the other checkers found. */
export function jsonLine(r: ChaosReport): string {
  const v = r.verdict;
  return JSON.stringify({
    seed: r.seed,
    faults: r.faults.length,
    ackedLost: v.ackedLost,
    acceptedTwice: v.acceptedTwice,
    ruleMismatches: v.ruleMismatches,
    notificationsMissing: v.notificationsMissing,
    maxOutageMs: v.maxOutageMs,
    stateMismatches: v.stateMismatches,
    errorAnswers: v.errorAnswers,
    undecided: v.undecided,
    auditVerified: r.auditVerify.code === 0,
    auditCaughtUp: r.auditBehind.length === 0,
    unexpectedExits: r.unexpectedExits.length,
    outagesOverBound: v.outages.filter((o) => o.maxOutageMs > o.boundMs).length,
    bidsDecided: r.bids.decided,
    durationS: Math.round(r.durationMs / 1000),
    targets: r.targetKinds.join(','),
    passed: passed(r),
  });
}

/** The short report printed before the JSON line: faults with their outages, then the checkers. */
export function textReport(r: ChaosReport): string {
  const v = r.verdict;
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'FAIL');
  const lines = [
    `chaos seed ${r.seed}: ${r.faults.length} faults in ${v.outages.length} groups over ${Math.round(r.durationMs / 1000)} s; ` +
      `${r.bids.sent} bids (${r.bids.decided} decided, ${r.bids.accepted} accepted, ${r.bids.attempts} attempts), ` +
      `${r.auctions} auctions, ${r.clientReconnects} client connections, ${[...r.resubscribes.values()].reduce((a, n) => a + n, 0)} subscriptions asked again; ${Math.round(r.elapsedMs / 1000)} s in all`,
    '',
    'fault group                                           at (s)   longest wait   bound',
    ...v.outages.flatMap((o) => {
      const line = `${mark(o.maxOutageMs <= o.boundMs)} ${o.faults.padEnd(48)} ${(o.fromMs / 1000).toFixed(1).padStart(6)}   ${String(o.maxOutageMs).padStart(7)} ms   ${o.boundMs} ms`;
      const lost = r.lostLeaders.filter((l) => l.group === o.group);
      return lost.length === 0 ? [line] : [line, `       leaders lost, back after: ${describeLost(lost)}`];
    }),
    '',
    `${mark(v.ackedLost === 0)} acknowledged bids missing from the streams: ${v.ackedLost}`,
    `${mark(v.acceptedTwice === 0)} bidIds accepted twice: ${v.acceptedTwice}`,
    `${mark(v.ruleMismatches === 0)} answers or logged outcomes the reference rules contradict: ${v.ruleMismatches}`,
    `${mark(v.stateMismatches === 0)} watchers' last states that are not the final state: ${v.stateMismatches}`,
    `${mark(v.notificationsMissing === 0)} outbid/won notifications never received: ${v.notificationsMissing}` +
      (v.notificationsMissing ? ` (${v.notificationsMissingWritten} of them in the NOTIFICATIONS stream)` : ''),
    `${mark(v.errorAnswers === 0)} valid bids answered with an error: ${v.errorAnswers}`,
    `${mark(v.undecided === 0)} bids never decided: ${v.undecided}`,
    `${mark(r.auditVerify.code === 0)} audit verify: ${r.auditVerify.code === 0 ? 'passed' : `exit ${r.auditVerify.code}: ${r.auditVerify.output.trim().split('\n').slice(-3).join(' | ')}`}`,
    `${mark(r.unexpectedExits.length === 0)} processes that exited by themselves: ${r.unexpectedExits.length === 0 ? 'none' : r.unexpectedExits.join(', ')}`,
    `${mark(r.auditBehind.length === 0)} the audit caught up with every stream: ${r.auditBehind.length === 0 ? 'yes' : r.auditBehind.join(', ')}`,
    `${mark(v.outages.every((o) => o.maxOutageMs <= o.boundMs))} longest client-visible outage: ${v.maxOutageMs} ms`,
  ];
  if (r.resubscribes.size > 0)
    lines.push(
      '',
      'subscriptions refused for now (asked again), by why:',
      ...[...r.resubscribes]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([why, n]) => `  ${String(n).padStart(6)}  ${why}`),
    );
  if (v.failures.length > 0) lines.push('', 'first failures:', ...v.failures.map((f) => `  ${f}`));
  if (!passed(r)) lines.push('', `FAILED: replay with ${replayCommand(r)}`);
  return lines.join('\n');
}
