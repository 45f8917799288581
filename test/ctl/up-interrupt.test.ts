import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, LauncherProcess, type LauncherChild, type LauncherProcessOptions } from '../../testkit/index.js';
import { isRunning } from '../../testkit/pids.js';

// Ctrl-C in a terminal sends SIGINT to the whole foreground process group: make, and `node dist/ctl/up.js`
// under it. `make up` must then stop every process it started, in order, print no error, leave nothing running.

/** `make up` started the way `via` says, in a temporary DATA_DIR, its gateway and NATS on free ports. */
async function startMakeUp(t: Test, via: LauncherProcessOptions['via']): Promise<LauncherProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'make-up-int-'));
  const launcher = await LauncherProcess.start({
    dataDir,
    port: await freePort(),
    via,
    env: { SHARD_COUNT: '2', NATS_PORT: String(await freePort()) },
  });
  // Teardowns run last-registered first: the processes are gone before their files are removed.
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  t.teardown(() => launcher.close());
  return launcher;
}

/** The stop line of each banner process, as the launcher's supervisor names it. */
const STOPPED_AS: Record<LauncherChild, string> = {
  gateway: 'gateway',
  engine: 'engine',
  replica: 'replica',
  audit: 'audit',
  nats: 'nats-server auction-local',
};

/** After the interrupted launcher has exited: each process was stopped cleanly, nothing said an error, nothing is left. */
function assertCleanStop(t: Test, launcher: LauncherProcess, banner: Record<LauncherChild, number>): void {
  const output = launcher.log.slice(launcher.log.indexOf('Press Ctrl-C to stop.'));
  t.match(output, /^SIGINT: stopping/m, 'the launcher heard the Ctrl-C');
  // A line without an exit code after the pid means the process exited 0 when asked: a clean stop.
  for (const [name, pid] of Object.entries(banner))
    t.match(
      output,
      new RegExp(`^${STOPPED_AS[name as LauncherChild]} stopped \\(pid ${pid}\\)$`, 'm'),
      `${name} (pid ${pid}) was stopped cleanly`,
    );
  // make says "make: *** [Makefile:..: up] Error 1" when its recipe fails; a stack trace has "    at " lines.
  t.notMatch(output, /Error|make: \*\*\*|^\s+at /m, 'no error, no make complaint, no stack trace');
  t.notMatch(output, /exited unexpectedly|restarting in|starting again/, 'nothing was restarted during the stop');
  for (const pid of launcher.namedPids()) t.notOk(isRunning(pid), `pid ${pid} is gone`);
  t.same(launcher.livePids(), [], 'nothing the launcher started is left running');
}

t.test(
  'Ctrl-C to the process group of `make up` in a terminal stops everything; make says nothing and ends by the SIGINT',
  async (t) => {
    const launcher = await startMakeUp(t, 'make');
    const banner = launcher.bannerPids();
    const exit = await launcher.interrupt();
    // GNU make catches SIGINT, waits for its recipe, then dies of the signal whatever the recipe's status, so the
    // recipe's status shows only in what make prints: "Error N" had it failed (checked above); the next test has it.
    t.same(
      { code: exit.code, signal: exit.signal },
      { code: null, signal: 'SIGINT' },
      'make ended by the SIGINT it caught, as GNU make does',
    );
    assertCleanStop(t, launcher, banner);
  },
);

t.test(
  'Ctrl-C to the process group of `make up` started from a script (make ignores SIGINT) stops everything; make exits 0',
  async (t) => {
    const launcher = await startMakeUp(t, 'make-ignoring-sigint');
    const banner = launcher.bannerPids();
    const exit = await launcher.interrupt();
    t.same(
      { code: exit.code, signal: exit.signal },
      { code: 0, signal: null },
      'make exits 0: its recipe, the launcher, did',
    );
    assertCleanStop(t, launcher, banner);
  },
);
