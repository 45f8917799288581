import t, { type Test } from 'tap';
import { connect, headers, PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy,
  DeliverPolicy,
  jetstream,
  jetstreamManager,
  type JetStreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import {
  NOTIFICATION_ACKS_BUCKET,
  NOTIFICATIONS_STREAM,
  notificationSubject,
  streamName,
  subjects,
} from '../../protocol/index.js';
import {
  adminSubjects,
  AUDIT_CONSUMER,
  auditSubject,
  inboxPrefix,
  kvStream,
  LEASE_BUCKET,
  type Role,
  ROLES,
  STATUS_SUBJECT,
  USER_FLAGS_BUCKET,
  USERS_BUCKET,
} from '../../protocol/names.js';
import { isStreamNotFound } from '../../protocol/nats-errors.js';
import { eventually, startNats } from '../../testkit/index.js';

/**
 * Each service role's NATS user, on a real nats-server with the cluster's
 * users and a provisioned cluster (as `make up` runs it), tries what an
 * attacker holding that credential would: every attempt must be refused by
 * the server (a permissions violation naming the exact subject) and leave
 * the state, read back as the admin, as it was. What the roles need is
 * exercised end to end by test/gateway and test/ctl on the same set-up.
 */

const LOG = streamName(0);
const ALL_STREAMS = [
  LOG,
  NOTIFICATIONS_STREAM,
  ...[LEASE_BUCKET, USERS_BUCKET, USER_FLAGS_BUCKET, NOTIFICATION_ACKS_BUCKET].map(kvStream),
];
/** How long a refusal may take to come back; it normally takes a round trip. */
const REFUSAL_TIMEOUT_MS = 5_000;

const nats = await startNats({ auth: true, shards: 1 });
t.teardown(() => nats.close());
const admin = await connect(nats.connectOptions('admin'));
t.teardown(() => admin.close());
const adminJsm = await jetstreamManager(admin);
const adminKvm = new Kvm(jetstream(admin));

// State worth attacking: a message in the shard log, the audit's durable consumer holding it
// delivered but unacknowledged, a lease, a user, a disabled user and a notification.
await jetstream(admin).publish(subjects.log(0), new Uint8Array([1, 2, 3]));
await adminJsm.consumers.add(LOG, {
  durable_name: AUDIT_CONSUMER,
  ack_policy: AckPolicy.All,
  deliver_policy: DeliverPolicy.All,
});
const pendingForAudit = await (await jetstream(admin).consumers.get(LOG, AUDIT_CONSUMER)).next({ expires: 5_000 });
if (!pendingForAudit) throw new Error('the audit consumer delivered nothing');
// The real acknowledgement subject of that delivery ($JS.ACK.<stream>.<consumer>...), which nats.js keeps as the reply.
const auditAckSubject = (pendingForAudit as typeof pendingForAudit & { reply: string }).reply;
const buckets = {
  leases: await adminKvm.open(LEASE_BUCKET),
  users: await adminKvm.open(USERS_BUCKET),
  flags: await adminKvm.open(USER_FLAGS_BUCKET),
  acks: await adminKvm.open(NOTIFICATION_ACKS_BUCKET),
};
await buckets.leases.put('shard.0', 'held by the real primary');
await buckets.users.put('user.alice', 'alice');
await buckets.flags.put('u42', 'disabled by an operator');
await buckets.acks.put('u1', '7');
await jetstream(admin).publish(notificationSubject(1), 'a real notification');

/** What an attack could change, read as the admin. */
async function snapshot(): Promise<unknown> {
  const streams: Record<string, unknown> = {};
  for (const name of ALL_STREAMS) {
    const info: StreamInfo = await adminJsm.streams.info(name);
    const consumers: string[] = [];
    for await (const names of adminJsm.consumers.list(name)) consumers.push(names.name);
    streams[name] = {
      config: info.config,
      messages: info.state.messages,
      lastSeq: info.state.last_seq,
      consumers: consumers.sort(),
    };
  }
  const audit = await adminJsm.consumers.info(LOG, AUDIT_CONSUMER);
  const values: Record<string, string | null> = {};
  for (const [name, kv] of Object.entries(buckets)) {
    for (const key of ['shard.0', 'user.alice', 'u42', 'u1', 'forged']) {
      const entry = await kv.get(key);
      values[`${name}/${key}`] = entry && entry.operation === 'PUT' ? entry.string() : null;
    }
  }
  const names: string[] = [];
  for await (const name of adminJsm.streams.names()) names.push(name);
  return {
    streams,
    values,
    streamNames: names.sort(),
    audit: {
      config: audit.config,
      ackFloor: audit.ack_floor.stream_seq,
      ackPending: audit.num_ack_pending,
      delivered: audit.delivered.stream_seq,
    },
  };
}

/** The permissions violation inside a nats.js error (requests wrap it), or null. */
function violation(error: unknown): PermissionViolationError | null {
  for (let e: unknown = error; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return null;
}

/** Every permissions violation the server reports on a connection, as it arrives. */
class Refusals {
  private readonly seen: PermissionViolationError[] = [];
  private readonly waiting = new Set<() => void>();

  constructor(nc: NatsConnection) {
    void (async () => {
      for await (const status of nc.status()) {
        if (status.type !== 'error' || !(status.error instanceof PermissionViolationError)) continue;
        this.seen.push(status.error);
        for (const wake of this.waiting) wake();
      }
    })();
  }

  /** Resolves when the server has refused `operation` on exactly `subject`; fails after a bound. */
  of(operation: 'publish' | 'subscription', subject: string): Promise<PermissionViolationError> {
    const find = () => this.seen.find((e) => e.operation === operation && e.subject === subject);
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (!found) return;
        clearTimeout(timer);
        this.waiting.delete(check);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.waiting.delete(check);
        reject(new Error(`no permissions violation for ${operation} ${subject}`));
      }, REFUSAL_TIMEOUT_MS);
      this.waiting.add(check);
      check();
    });
  }
}

type Attacker = { role: Role; nc: NatsConnection; jsm: JetStreamManager; refusals: Refusals };

async function attacker(role: Role): Promise<Attacker> {
  const nc = await connect(nats.connectOptions(role));
  t.teardown(() => nc.close());
  return { role, nc, jsm: await jetstreamManager(nc), refusals: new Refusals(nc) };
}

type Check = { t: Test; a: Attacker };

/** A JetStream API call must be refused by the server for its exact API subject (or one matching), and change nothing. */
async function refusedCall(
  t: Test,
  what: string,
  subject: string | RegExp,
  call: () => Promise<unknown>,
): Promise<void> {
  const before = await snapshot();
  const outcome = await call().then(
    () => null,
    (error: unknown) => error,
  );
  const refused = violation(outcome);
  const how = outcome === null ? 'it succeeded' : outcome instanceof Error ? String(outcome) : JSON.stringify(outcome);
  t.ok(refused, `${what}: refused by the server (${how})`);
  t.match(refused, { operation: 'publish', subject }, `${what}: the refusal names ${subject}`);
  t.same(await snapshot(), before, `${what}: nothing changed`);
}

/** A plain publish must be refused for its subject, reach no subscriber and change nothing. */
async function refusedPublish(
  { t, a }: Check,
  what: string,
  subject: string,
  data: Uint8Array | string = 'forged',
  headers?: Parameters<NatsConnection['publish']>[2],
): Promise<void> {
  const before = await snapshot();
  const received: string[] = [];
  const listener = admin.subscribe(subject, {
    callback: (_e, msg) => {
      received.push(msg.subject);
    },
  });
  await admin.flush();
  a.nc.publish(subject, data, headers);
  await a.nc.flush();
  const refused = await a.refusals.of('publish', subject).catch((error: Error) => error);
  t.type(refused, PermissionViolationError, `${what}: refused by the server`);
  // Had the server routed it, it would have reached the admin's listener before this round trip ends.
  await admin.flush();
  listener.unsubscribe();
  t.same(received, [], `${what}: nobody received it`);
  t.same(await snapshot(), before, `${what}: nothing changed`);
}

/** A subscription must be refused for its subject and the subscription closed by it. */
async function refusedSubscription({ t, a }: Check, what: string, subject: string): Promise<void> {
  const received: string[] = [];
  const sub = a.nc.subscribe(subject, {
    callback: (error, msg) => {
      if (!error) received.push(msg.subject);
    },
  });
  await a.nc.flush();
  const refused = await a.refusals.of('subscription', subject).catch((error: Error) => error);
  t.type(refused, PermissionViolationError, `${what}: refused by the server`);
  // Only a refused subscription is closed by the server's answer; a granted one stays open until unsubscribed.
  if (refused instanceof PermissionViolationError)
    t.type(await sub.closed, PermissionViolationError, `${what}: the subscription is closed by the refusal`);
  // A message published now, after the refusal, must not reach it.
  admin.publish(subject.replace('>', 'probe').replace('*', 'probe'), 'probe');
  await admin.flush();
  await a.nc.flush();
  sub.unsubscribe();
  t.same(received, [], `${what}: it receives nothing`);
}

/** What every service role is refused alike. */
async function commonRefusals(c: Check): Promise<void> {
  const { t, a } = c;
  await refusedCall(t, 'creating a stream that captures the operator subjects', `$JS.API.STREAM.CREATE.CAPTURE`, () =>
    a.jsm.streams.add({ name: 'CAPTURE', subjects: [adminSubjects.all] }),
  );
  t.ok(await adminJsm.streams.info('CAPTURE').then(() => false, isStreamNotFound), 'no such stream exists afterwards');
  // Raw API requests: nats.js's update() reads the stream's info first, which some roles may not either.
  const update = async (stream: string, change: Record<string, unknown>) => {
    const { config } = await adminJsm.streams.info(stream);
    return a.nc.request(`$JS.API.STREAM.UPDATE.${stream}`, JSON.stringify({ ...config, ...change }), {
      timeout: REFUSAL_TIMEOUT_MS,
    });
  };
  await refusedCall(t, `limiting ${LOG} so that it drops acknowledged bids`, `$JS.API.STREAM.UPDATE.${LOG}`, () =>
    update(LOG, { max_msgs: 1 }),
  );
  await refusedCall(
    t,
    'expiring the disabled users (re-enabling them)',
    `$JS.API.STREAM.UPDATE.${kvStream(USER_FLAGS_BUCKET)}`,
    () => update(kvStream(USER_FLAGS_BUCKET), { max_age: 600_000_000_000 }),
  );
  await refusedCall(t, `deleting ${LOG}`, `$JS.API.STREAM.DELETE.${LOG}`, () => a.jsm.streams.delete(LOG));
  await refusedCall(t, `purging ${LOG}`, `$JS.API.STREAM.PURGE.${LOG}`, () => a.jsm.streams.purge(LOG));
  await refusedCall(t, `deleting a message of ${LOG}`, `$JS.API.STREAM.MSG.DELETE.${LOG}`, () =>
    a.jsm.streams.deleteMessage(LOG, 1),
  );
  await refusedCall(
    t,
    'deleting the disabled users bucket',
    `$JS.API.STREAM.DELETE.${kvStream(USER_FLAGS_BUCKET)}`,
    () => a.jsm.streams.delete(kvStream(USER_FLAGS_BUCKET)),
  );
  await refusedCall(t, 'listing every stream with its configuration', '$JS.API.STREAM.LIST', async () => {
    for await (const info of a.jsm.streams.list()) void info;
  });
  await refusedCall(
    t,
    'reading a user record by sequence (STREAM.MSG.GET)',
    `$JS.API.STREAM.MSG.GET.${kvStream(USERS_BUCKET)}`,
    () => a.jsm.streams.getMessage(kvStream(USERS_BUCKET), { last_by_subj: '$KV.auction_users.user.alice' }),
  );
  // The operator subjects: every one of them, whatever the body.
  for (const subject of [adminSubjects.engine(0), adminSubjects.audit(0), adminSubjects.gateway])
    await refusedPublish(c, `publishing the operator subject ${subject}`, subject);
  await refusedPublish(c, 'disabling a user', '$KV.auction_user_flags.u7', 'x');
  await refusedPublish(c, 're-enabling a disabled user', '$KV.auction_user_flags.u42', '', { headers: kvDelete() });
  await refusedPublish(c, 'asking every process for its status', STATUS_SUBJECT);
  // The streams' re-published copies, which gateways trust as the stream's own: only the server sends them.
  await refusedPublish(c, 'forging a shard log batch to the gateways', subjects.logged(0));
  await refusedPublish(c, 'forging a notification to the gateways', 'notified.1');
  await refusedPublish(c, 'forging a disabled-users change to the gateways', 'auction.user_flags.u42');
  // Inboxes: nobody reads another role's replies, nor the default or the whole subject space.
  for (const other of ROLES.filter((r) => r !== a.role))
    await refusedSubscription(c, `reading the ${other}'s replies`, `${inboxPrefix(other)}.>`);
  await refusedSubscription(c, 'reading the default inbox', '_INBOX.>');
  await refusedSubscription(c, 'reading every subject', '>');
}

/** The headers of a KV delete (nats.js writes a delete as an empty message marked DEL). */
function kvDelete() {
  const h = headers();
  h.set('KV-Operation', 'DEL');
  return h;
}

t.test('engine credentials', async (t) => {
  const a = await attacker('engine');
  const c = { t, a };
  t.ok(
    (await a.jsm.streams.info(LOG)).config.name,
    'the engine reads its shard stream (control: the connection works)',
  );
  t.equal(
    (await (await new Kvm(jetstream(a.nc)).create(LEASE_BUCKET)).get('shard.0'))?.string(),
    'held by the real primary',
    'and reads its leases',
  );
  const ordered = await jetstream(a.nc).consumers.get(LOG, { deliver_policy: DeliverPolicy.All });
  await ordered.next({ expires: 1_000 });
  t.ok(
    (await ordered.info()).name,
    "it reads its ordered consumer's info: nats.js asks it after missed heartbeats and, refused, never pulled again",
  );
  await commonRefusals(c);
  await refusedCall(
    t,
    "deleting the audit's durable consumer",
    `$JS.API.CONSUMER.DELETE.${LOG}.${AUDIT_CONSUMER}`,
    () => a.jsm.consumers.delete(LOG, AUDIT_CONSUMER),
  );
  await refusedCall(
    t,
    "taking over the audit's durable consumer",
    `$JS.API.CONSUMER.CREATE.${LOG}.${AUDIT_CONSUMER}`,
    () =>
      a.jsm.consumers.add(LOG, {
        durable_name: AUDIT_CONSUMER,
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.New,
      }),
  );
  await refusedPublish(c, "acknowledging the audit's pending message", auditAckSubject, '+ACK');
  await refusedCall(
    t,
    'reading a user (DIRECT.GET)',
    `$JS.API.DIRECT.GET.${kvStream(USERS_BUCKET)}.$KV.${USERS_BUCKET}.user.alice`,
    () => a.jsm.direct.getMessage(kvStream(USERS_BUCKET), { last_by_subj: `$KV.${USERS_BUCKET}.user.alice` }),
  );
  await refusedCall(t, 'reading the notifications (DIRECT.GET)', `$JS.API.DIRECT.GET.${NOTIFICATIONS_STREAM}`, () =>
    a.jsm.direct.getMessage(NOTIFICATIONS_STREAM, { seq: 1 }),
  );
  await refusedPublish(c, 'writing a user', `$KV.${USERS_BUCKET}.user.mallory`);
  await refusedPublish(c, "acknowledging a user's notifications", `$KV.${NOTIFICATION_ACKS_BUCKET}.u1`, '999');
  await refusedPublish(c, 'writing a notification', notificationSubject(1));
  await refusedPublish(c, 'forging a reply to the audit', `${inboxPrefix('audit')}.forged.1`);
  await refusedSubscription(c, "serving the audit's queries", auditSubject(0));
  await refusedSubscription(c, "serving the gateways' operator subject", adminSubjects.gateway);
});

t.test('audit credentials', async (t) => {
  const a = await attacker('audit');
  const c = { t, a };
  t.ok(
    (await a.jsm.consumers.info(LOG, AUDIT_CONSUMER)).config.durable_name,
    'the audit reads its own durable consumer (control: the connection works)',
  );
  await commonRefusals(c);
  await adminJsm.consumers.add(NOTIFICATIONS_STREAM, { durable_name: 'operators', ack_policy: AckPolicy.Explicit });
  await refusedCall(
    t,
    'deleting a consumer that is not its own',
    `$JS.API.CONSUMER.DELETE.${NOTIFICATIONS_STREAM}.operators`,
    () => a.jsm.consumers.delete(NOTIFICATIONS_STREAM, 'operators'),
  );
  await refusedCall(
    t,
    'reading a lease (DIRECT.GET)',
    `$JS.API.DIRECT.GET.${kvStream(LEASE_BUCKET)}.$KV.${LEASE_BUCKET}.shard.0`,
    () => a.jsm.direct.getMessage(kvStream(LEASE_BUCKET), { last_by_subj: `$KV.${LEASE_BUCKET}.shard.0` }),
  );
  await refusedCall(
    t,
    'reading a user (DIRECT.GET)',
    `$JS.API.DIRECT.GET.${kvStream(USERS_BUCKET)}.$KV.${USERS_BUCKET}.user.alice`,
    () => a.jsm.direct.getMessage(kvStream(USERS_BUCKET), { last_by_subj: `$KV.${USERS_BUCKET}.user.alice` }),
  );
  await refusedPublish(c, 'appending to the shard log', subjects.log(0));
  await refusedPublish(c, 'taking a lease', `$KV.${LEASE_BUCKET}.shard.0`, 'mine now');
  await refusedPublish(c, 'sending commands to an engine', subjects.commands(0));
  await refusedPublish(c, 'forging a reply to an engine', `${inboxPrefix('engine')}.forged.1`);
  await refusedSubscription(c, "serving a shard's commands", subjects.commands(0));
});

t.test('gateway credentials (internet-facing: the likeliest to be stolen)', async (t) => {
  const a = await attacker('gateway');
  const c = { t, a };
  t.equal(
    (await (await new Kvm(jetstream(a.nc)).create(USERS_BUCKET)).get('user.alice'))?.string(),
    'alice',
    'the gateway reads its users (control: the connection works)',
  );
  await commonRefusals(c);
  await refusedCall(
    t,
    "deleting the audit's durable consumer",
    `$JS.API.CONSUMER.DELETE.${LOG}.${AUDIT_CONSUMER}`,
    () => a.jsm.consumers.delete(LOG, AUDIT_CONSUMER),
  );
  await refusedCall(
    t,
    "taking over the audit's durable consumer",
    `$JS.API.CONSUMER.CREATE.${LOG}.${AUDIT_CONSUMER}`,
    () =>
      a.jsm.consumers.add(LOG, {
        durable_name: AUDIT_CONSUMER,
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.New,
      }),
  );
  await refusedPublish(c, "acknowledging the audit's pending message", auditAckSubject, '+ACK');
  await refusedCall(
    t,
    'reading a lease (DIRECT.GET)',
    `$JS.API.DIRECT.GET.${kvStream(LEASE_BUCKET)}.$KV.${LEASE_BUCKET}.shard.0`,
    () => a.jsm.direct.getMessage(kvStream(LEASE_BUCKET), { last_by_subj: `$KV.${LEASE_BUCKET}.shard.0` }),
  );
  await refusedCall(
    t,
    'reading the whole user bucket by sequence (DIRECT.GET without a key)',
    `$JS.API.DIRECT.GET.${kvStream(USERS_BUCKET)}`,
    () => a.jsm.direct.getMessage(kvStream(USERS_BUCKET), { seq: 1 }),
  );
  await refusedPublish(c, 'appending to the shard log', subjects.log(0));
  await refusedPublish(c, 'taking a lease', `$KV.${LEASE_BUCKET}.shard.0`, 'mine now');
  await refusedPublish(c, 'writing a notification', notificationSubject(1));
  await refusedPublish(c, 'forging a reply to an engine', `${inboxPrefix('engine')}.forged.1`);
  await refusedPublish(c, 'forging a reply to the audit', `${inboxPrefix('audit')}.forged.1`);
  await refusedPublish(c, 'forging a reply to another gateway', `${inboxPrefix('gateway')}.forged.1`);
  await refusedSubscription(c, "serving a shard's commands (impersonating an engine)", subjects.commands(0));
  await refusedSubscription(c, "serving the audit's queries", auditSubject(0));
  // It follows the streams without consumers: no consumer right at all, on any stream, in any form.
  const raw = (subject: string, body: unknown) => () =>
    a.nc.request(subject, JSON.stringify(body), { timeout: REFUSAL_TIMEOUT_MS });
  for (const stream of ALL_STREAMS) {
    await refusedCall(t, `creating a pull consumer on ${stream}`, `$JS.API.CONSUMER.CREATE.${stream}.evil_pull`, () =>
      a.jsm.consumers.add(stream, { name: 'evil_pull', ack_policy: AckPolicy.None }),
    );
    await refusedCall(t, `creating a push consumer on ${stream}`, `$JS.API.CONSUMER.CREATE.${stream}.evil_push`, () =>
      a.jsm.consumers.add(stream, {
        name: 'evil_push',
        ack_policy: AckPolicy.None,
        deliver_subject: `${inboxPrefix('gateway')}.evil`,
      }),
    );
    await refusedCall(
      t,
      `creating an unnamed push consumer on ${stream}`,
      `$JS.API.CONSUMER.CREATE.${stream}`,
      raw(`$JS.API.CONSUMER.CREATE.${stream}`, {
        stream_name: stream,
        config: { ack_policy: 'none', deliver_subject: `${inboxPrefix('gateway')}.evil` },
      }),
    );
    await refusedCall(
      t,
      `creating a durable consumer on ${stream} (the older subject form)`,
      `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.evil`,
      raw(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.evil`, {
        stream_name: stream,
        config: { durable_name: 'evil', ack_policy: 'none' },
      }),
    );
  }
  await refusedCall(
    t,
    'an ordered consumer on the shard log (how gateways used to follow it)',
    new RegExp(`^\\$JS\\.API\\.CONSUMER\\.CREATE\\.${LOG}\\.`),
    async () => {
      const consumer = await jetstream(a.nc).consumers.get(LOG);
      await consumer.next({ expires: 1_000 });
    },
  );
  await refusedCall(
    t,
    'a KV watch of the disabled users (a push consumer)',
    new RegExp(`^\\$JS\\.API\\.CONSUMER\\.CREATE\\.${kvStream(USER_FLAGS_BUCKET)}\\.`),
    async () => {
      const watch = await (await new Kvm(jetstream(a.nc)).create(USER_FLAGS_BUCKET)).watch();
      watch.stop();
    },
  );
  await refusedCall(
    t,
    "pulling from the audit's durable consumer",
    `$JS.API.CONSUMER.MSG.NEXT.${LOG}.${AUDIT_CONSUMER}`,
    raw(`$JS.API.CONSUMER.MSG.NEXT.${LOG}.${AUDIT_CONSUMER}`, { batch: 1, expires: 1_000_000_000 }),
  );
  await refusedCall(t, "reading the audit consumer's position", `$JS.API.CONSUMER.INFO.${LOG}.${AUDIT_CONSUMER}`, () =>
    a.jsm.consumers.info(LOG, AUDIT_CONSUMER),
  );
  await refusedCall(
    t,
    "listing a stream's consumers",
    `$JS.API.CONSUMER.NAMES.${LOG}`,
    raw(`$JS.API.CONSUMER.NAMES.${LOG}`, {}),
  );
  await refusedPublish(c, "answering a push consumer's flow control", `$JS.FC.${kvStream(USER_FLAGS_BUCKET)}.x.1`);
  // An auction id may name a shard beyond the cluster's: the stream names answer that, not the stream's info.
  await refusedCall(
    t,
    'reading the info of a shard stream beyond the cluster',
    `$JS.API.STREAM.INFO.${streamName(1)}`,
    () => a.jsm.streams.info(streamName(1)),
  );
  // What it does need (controls: the connection and these rights work).
  t.ok(
    await a.jsm.direct.getMessage(LOG, { seq: 1 }),
    'it reads the shard log by sequence (direct get), to read gaps back',
  );
  t.ok(
    (await a.jsm.streams.info(LOG)).config.republish,
    "and reads the log's info: the log re-publishes, as provisioned",
  );
});

t.test('the push-consumer injection into a shard log is refused for the gateway', async (t) => {
  const a = await attacker('gateway');
  // Control: where the right to create consumers exists, the attack works. A push consumer on
  // NOTIFICATIONS made by the admin delivers into another stream's subject, and that stream stores
  // it (under the notification's own subject, which nats-server delivers it with).
  await adminJsm.streams.add({ name: 'SCRATCH', subjects: ['scratch.in'] });
  t.teardown(() => adminJsm.streams.delete('SCRATCH'));
  await adminJsm.consumers.add(NOTIFICATIONS_STREAM, {
    name: 'control',
    deliver_subject: 'scratch.in',
    deliver_policy: DeliverPolicy.All,
    ack_policy: AckPolicy.None,
  });
  // No event says that a stream stored a delivery: its state is read until it has.
  const injected = await eventually(
    async () => {
      const m = await adminJsm.streams.getMessage('SCRATCH', { seq: 1 });
      if (!m) throw new Error('nothing stored yet');
      return m;
    },
    { timeoutMs: REFUSAL_TIMEOUT_MS, intervalMs: 20 },
  );
  t.equal(
    injected.subject,
    notificationSubject(1),
    'control: the notification was appended to the stream it was delivered into',
  );
  await adminJsm.consumers.delete(NOTIFICATIONS_STREAM, 'control');
  // The attack with the gateway's credentials: a push consumer on NOTIFICATIONS delivering into the
  // shard log, whose next append by the engine would then fail its expected sequence.
  await refusedCall(
    t,
    'a push consumer on NOTIFICATIONS delivering into auction.log.0',
    `$JS.API.CONSUMER.CREATE.${NOTIFICATIONS_STREAM}.inject`,
    () =>
      a.jsm.consumers.add(NOTIFICATIONS_STREAM, {
        name: 'inject',
        deliver_subject: subjects.log(0),
        deliver_policy: DeliverPolicy.All,
        ack_policy: AckPolicy.None,
      }),
  );
  await refusedCall(t, 'the same without a name', `$JS.API.CONSUMER.CREATE.${NOTIFICATIONS_STREAM}`, () =>
    a.nc.request(
      `$JS.API.CONSUMER.CREATE.${NOTIFICATIONS_STREAM}`,
      JSON.stringify({
        stream_name: NOTIFICATIONS_STREAM,
        config: { deliver_subject: subjects.log(0), deliver_policy: 'all', ack_policy: 'none' },
      }),
      { timeout: REFUSAL_TIMEOUT_MS },
    ),
  );
  const before = (await adminJsm.streams.info(LOG)).state;
  // A notification stored now would be delivered into the log by any consumer the attempts had made.
  await jetstream(admin).publish(notificationSubject(1), 'after the attempts');
  await admin.flush();
  const after = (await adminJsm.streams.info(LOG)).state;
  t.same(
    { messages: after.messages, last: after.last_seq },
    { messages: before.messages, last: before.last_seq },
    'the shard log is unchanged, read as the admin',
  );
  t.same(
    await adminJsm.consumers.info(NOTIFICATIONS_STREAM, 'inject').catch(() => null),
    null,
    'no such consumer exists',
  );
});

t.test('replies still reach the role that asked, and only it', async (t) => {
  const [engine, gateway, audit] = [await attacker('engine'), await attacker('gateway'), await attacker('audit')];
  engine.nc.subscribe(subjects.commands(0), { callback: (_e, msg) => void msg.respond('from the engine') });
  await engine.nc.flush();
  t.equal(
    (await gateway.nc.request(subjects.commands(0), 'bid', { timeout: 3_000 })).string(),
    'from the engine',
    "a gateway's request is answered by the engine, into the gateway's inbox",
  );
  t.equal(
    (await admin.request(subjects.commands(0), 'bid', { timeout: 3_000 })).string(),
    'from the engine',
    "and so is the admin's",
  );
  // The audit answers gateways and the admin, never anyone else: an engine asking gets no answer.
  audit.nc.subscribe(auditSubject(0), { callback: (_e, msg) => void msg.respond('from the audit') });
  await audit.nc.flush();
  t.equal(
    (await gateway.nc.request(auditSubject(0), 'query', { timeout: 3_000 })).string(),
    'from the audit',
    'the audit answers a gateway',
  );
  await refusedPublish({ t, a: engine }, 'an engine querying the audit', auditSubject(0));
});
