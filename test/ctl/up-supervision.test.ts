import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor } from '../../ctl/supervisor.js';
import { eventually, freePort, LauncherProcess, ManagedProcess } from '../../testkit/index.js';
import { Waiters } from '../../testkit/waiters.js';
import { isRunning } from '../../testkit/pids.js';

/** The launcher's output written after position `from`. */
function since(launcher: LauncherProcess, from: number): string {
  return launcher.log.slice(Math.max(0, launcher.log.length - (launcher.outputPosition - from)));
}

/** `make up` as an operator runs it, in a temporary DATA_DIR, its gateway and NATS on free ports. */
async function startLauncher(t: Test, env: Record<string, string> = {}): Promise<LauncherProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'make-up-'));
  const launcher = await LauncherProcess.start({
    dataDir,
    port: await freePort(),
    env: { SHARD_COUNT: '2', NATS_PORT: String(await freePort()), ...env },
  });
  // Teardowns run last-registered first: the processes are gone before their files are removed.
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  t.teardown(() => launcher.close());
  return launcher;
}

/** After the launcher has exited: every process it ever named (banner, restarts) is gone. */
function assertAllGone(t: Test, launcher: LauncherProcess, expected: number[]): void {
  const named = launcher.namedPids();
  for (const pid of expected) t.ok(named.includes(pid), `the launcher's output names pid ${pid}`);
  for (const pid of named) t.notOk(isRunning(pid), `pid ${pid} is gone`);
  t.same(launcher.livePids(), [], 'nothing the launcher started is left running');
}

t.test(
  'make up restarts a SIGKILLed gateway and nats-server, then SIGTERM stops everything in order and exits 0',
  async (t) => {
    const launcher = await startLauncher(t);
    const first = launcher.bannerPids();
    t.equal((await fetch(`${launcher.url}/healthz`)).status, 200, 'the gateway answers /healthz');

    let from = launcher.outputPosition;
    process.kill(first.gateway, 'SIGKILL');
    await launcher.waitForOutput('gateway restarted (pid', from, 60_000);
    const gatewayLog = since(launcher, from);
    t.match(
      gatewayLog,
      `gateway (pid ${first.gateway}) exited unexpectedly (signal SIGKILL)`,
      'the crash is reported with its pid and signal',
    );
    t.match(gatewayLog, 'gateway: restarting in 0.5 s', 'the first restart waits the first backoff delay');
    const gateway = Number(/gateway restarted \(pid (\d+)\)/.exec(gatewayLog)![1]);
    t.not(gateway, first.gateway, 'a new gateway process');
    t.notOk(isRunning(first.gateway), 'the killed gateway is gone');
    t.equal(
      (await fetch(`${launcher.url}/healthz`)).status,
      200,
      'the restarted gateway answers /healthz on the same port',
    );

    from = launcher.outputPosition;
    process.kill(first.nats, 'SIGKILL');
    await launcher.waitForOutput('nats-server auction-local restarted (pid', from, 60_000);
    const natsLog = since(launcher, from);
    t.match(
      natsLog,
      `nats-server auction-local (pid ${first.nats}) exited unexpectedly (signal SIGKILL)`,
      'the nats-server crash is reported',
    );
    const nats = Number(/nats-server auction-local restarted \(pid (\d+)\)/.exec(natsLog)![1]);
    // Registering a user writes to a KV bucket: the gateway reached the restarted server by itself.
    let attempt = 0;
    const registered = await eventually(
      async () => {
        const response = await fetch(`${launcher.url}/v1/users`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: `after-nats-${attempt++}`, password: 'secret-password' }),
        });
        if (response.status !== 201) throw new Error(`${response.status} ${await response.text()}`);
        return response.status;
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    t.equal(registered, 201, 'the system works again through the restarted nats-server');
    t.comment(
      `other restarts after the NATS restart: ${
        since(launcher, from)
          .split('\n')
          .filter((l) => / restarted \(pid/.test(l) && !l.startsWith('nats-server'))
          .join('; ') || 'none'
      }`,
    );

    const stopFrom = launcher.outputPosition;
    t.equal(await launcher.signal('SIGTERM'), 0, 'the launcher exits 0 on SIGTERM');
    const stopLog = since(launcher, stopFrom);
    const at = (name: string) => stopLog.indexOf(`${name} stopped (pid`);
    // A line without an exit code after the pid means the process exited 0: a clean stop, not a kill.
    for (const name of ['gateway', 'engine', 'replica', 'audit', 'nats-server auction-local'])
      t.match(stopLog, new RegExp(`^${name} stopped \\(pid \\d+\\)$`, 'm'), `${name} stopped cleanly`);
    t.ok(
      at('gateway') < Math.min(at('engine'), at('replica'), at('audit')),
      'the gateway stopped before the engines and the audit',
    );
    t.ok(
      Math.max(at('engine'), at('replica'), at('audit')) < at('nats-server auction-local'),
      'nats-server stopped last',
    );
    assertAllGone(t, launcher, [...Object.values(first), gateway, nats]);
  },
);

t.test(
  'SIGINT while a child waits in its restart backoff cancels the restart, stops the rest and exits 0',
  async (t) => {
    // A ten-minute first delay: the gateway is certainly still waiting when the SIGINT comes.
    const launcher = await startLauncher(t, { RESTART_BACKOFF_MS: '600000' });
    const first = launcher.bannerPids();
    const from = launcher.outputPosition;
    process.kill(first.gateway, 'SIGKILL');
    await launcher.waitForOutput('gateway: restarting in 600 s', from, 30_000);
    t.equal(await launcher.signal('SIGINT'), 0, 'the launcher exits 0 on SIGINT');
    const log = since(launcher, from);
    t.match(log, 'gateway: pending restart cancelled', 'the pending restart was cancelled');
    t.notMatch(log, 'gateway starting again', 'the gateway was not started again');
    for (const name of ['engine', 'replica', 'audit', 'nats-server auction-local'])
      t.match(log, `${name} stopped (pid`, `${name} was stopped`);
    assertAllGone(t, launcher, Object.values(first));
  },
);

/** A child that is ready at once and exits with code 3, except on its fifth run, which stays up for 1.5 s. */
class Crasher extends ManagedProcess {
  constructor(private readonly counterFile: string) {
    super('crasher', 'crasher ready');
  }

  protected command() {
    const script = [
      "const fs = require('node:fs');",
      'const file = process.argv[1];',
      "const run = Number(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : 0) + 1;",
      'fs.writeFileSync(file, String(run));',
      "console.log('crasher ready, run ' + run);",
      'setTimeout(() => process.exit(3), run === 5 ? 1500 : 0);',
    ].join(' ');
    return { file: process.execPath, args: ['-e', script, this.counterFile] };
  }
}

t.test(
  'the restart delay doubles with each quick failure up to its cap, and starts again after a stable run',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'crasher-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const lines: string[] = [];
    const changed = new Waiters();
    const supervisor = new Supervisor({
      firstDelayMs: 20,
      maxDelayMs: 80,
      stableAfterMs: 500,
      report: (line) => {
        lines.push(line);
        changed.wake();
      },
    });
    const crasher = new Crasher(join(dir, 'runs'));
    t.teardown(() => crasher.killNow());
    await crasher.launch();
    supervisor.add(crasher, 0);
    const delays = () => lines.flatMap((l) => /^crasher: restarting in (\S+) s$/.exec(l)?.[1] ?? []);
    await changed.until(
      () => (delays().length >= 6 ? true : undefined),
      30_000,
      () => `six restarts expected, saw:\n${lines.join('\n')}`,
    );
    await supervisor.stop();
    t.same(
      delays().slice(0, 6),
      ['0.02', '0.04', '0.08', '0.08', '0.02', '0.04'],
      'doubling to the cap; after the 1.5 s run, the first delay again',
    );
    t.ok(
      lines.some((l) => /^crasher \(pid \d+\) exited unexpectedly \(code 3\)/.test(l)),
      'each exit is reported with its code',
    );
    const restarted = lines.flatMap((l) => /^crasher restarted \(pid (\d+)\)$/.exec(l)?.[1] ?? []);
    t.ok(restarted.length >= 5, `restarted with the same command, ready each time (${restarted.length} restarts)`);
    t.equal(new Set(restarted).size, restarted.length, 'each restart is a new process');
    t.notOk(crasher.isRunning, 'nothing runs after stop()');
  },
);

/** A child that is ready at once; `onSigterm` (JavaScript run in it) says what it does when asked to stop. */
class Scripted extends ManagedProcess {
  constructor(
    label: string,
    private readonly onSigterm: () => string,
  ) {
    super(label, `${label} ready`);
  }

  protected command() {
    const script = `process.on('SIGTERM', () => { ${this.onSigterm()} }); console.log('${this.label} ready'); setInterval(() => {}, 60_000);`;
    return { file: process.execPath, args: ['-e', script] };
  }
}

t.test(
  'a child that exits by itself while the supervisor stops the others is reported as already exited, not restarted, not signalled',
  async (t) => {
    const lines: string[] = [];
    const supervisor = new Supervisor({ firstDelayMs: 10, report: (line) => lines.push(line) });
    // The bystander is stopped second; when the first is asked to stop, it kills the bystander (as a signal to the
    // whole process group would reach it) and exits only once the bystander is gone, so the bystander's exit comes
    // while the stop is under way and before its own turn.
    const bystander = new Scripted('bystander', () => 'process.exit(0);');
    t.teardown(() => bystander.killNow());
    await bystander.launch();
    const bystanderPid = bystander.pid!;
    const first = new Scripted('first', () =>
      [
        `process.kill(${bystanderPid}, 'SIGKILL');`,
        // Signal 0 still finds the bystander until this test's process has reaped it, that is, has seen its exit.
        `const gone = () => { try { process.kill(${bystanderPid}, 0); return false; } catch { return true; } };`,
        'setInterval(() => gone() && process.exit(0), 5);',
      ].join(' '),
    );
    t.teardown(() => first.killNow());
    await first.launch();
    const firstPid = first.pid!;
    supervisor.add(first, 0);
    supervisor.add(bystander, 1);
    await supervisor.stop();
    // Nothing else: no "exited unexpectedly", no "restarting in", no stop signal sent to the bystander.
    t.same(
      lines,
      [`first stopped (pid ${firstPid})`, `bystander (pid ${bystanderPid}) had already exited (signal SIGKILL)`],
      'the first stopped; the bystander, already gone, is reported with its exit and not restarted',
    );
    t.notOk(first.isRunning || bystander.isRunning, 'nothing runs after stop()');
  },
);
