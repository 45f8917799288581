import t from 'tap';
import { pino } from 'pino';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNats } from '../../testkit/index.js';
import { SILENT_MS, watchForSilentServer } from '../../service/nats-watchdog.js';

/**
 * A connection on which the server answers every PING at once, except the
 * first, whose flush never settles (sent just before the link went: nats.js
 * may leave it pending). Nothing else arrives: a quiet gateway once bidding
 * stops.
 */
function quietConnection() {
  let inBytes = 0;
  let flushes = 0;
  const state = { reconnects: 0 };
  const nc = {
    isClosed: () => false,
    stats: () => ({ inBytes, outBytes: 0, inMsgs: 0, outMsgs: 0 }),
    getServer: () => '127.0.0.1:4222',
    reconnect: () => {
      state.reconnects++;
      return Promise.resolve();
    },
    flush: () => {
      flushes++;
      if (flushes === 1) return new Promise<void>(() => undefined);
      inBytes += 6; // PONG\r\n
      return Promise.resolve();
    },
  };
  return { nc: nc as unknown as NatsConnection, state };
}

t.test(
  'a PING that never settles is given up: a quiet server that answers is left once, not again and again',
  async (t) => {
    const { nc, state } = quietConnection();
    const stop = watchForSilentServer(nc, pino({ level: 'silent' }));
    t.teardown(stop);
    // Two silences' worth and more: the stuck PING costs one move; later PINGs are answered.
    await new Promise((resolve) => setTimeout(resolve, 3 * SILENT_MS));
    t.equal(state.reconnects, 1, 'left the server once, for the PING it never answered');
  },
);

t.test(
  'a real connection quiet of messages is not silent: its PONGs count (nats.js counts no protocol bytes)',
  async (t) => {
    const nats = await startNats();
    t.teardown(() => nats.close());
    const nc = await connect({ servers: nats.url });
    t.teardown(() => nc.close());
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const stop = watchForSilentServer(nc, logger);
    t.teardown(stop);
    const disconnects: string[] = [];
    void (async () => {
      for await (const s of nc.status())
        if (s.type === 'disconnect' || s.type === 'reconnecting') disconnects.push(s.type);
    })();
    // Three silences' worth with nothing sent or received but the watchdog's own PINGs.
    await new Promise((resolve) => setTimeout(resolve, 3 * SILENT_MS));
    t.same(warnings, [], 'the watchdog never called the server silent');
    t.same(disconnects, [], 'and never left it');
  },
);
