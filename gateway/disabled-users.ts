import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import type { JetStreamManager } from '@nats-io/jetstream';
import { kvPrefix } from '@nats-io/kv/internal';
import type { Logger } from 'pino';
import { isUserId } from '../protocol/index.js';
import { USER_FLAGS_BUCKET, USER_FLAGS_REPUBLISH } from '../protocol/names.js';
import { StreamFollower } from './stream-follower.js';

const FLAGS_STREAM = `${kvPrefix}${USER_FLAGS_BUCKET}`;
const FLAGS_KEY_PREFIX = `$KV.${USER_FLAGS_BUCKET}.`;
/** Keys read at once while loading the disabled users. */
const LOAD_PARALLEL = 64;
const RELOAD_RETRY_MS = 5_000;

/** The user of a key subject (`$KV.auction_user_flags.u42` -> 42), or null. */
function userOfSubject(subject: string): number | null {
  if (!subject.startsWith(`${FLAGS_KEY_PREFIX}u`)) return null;
  const userId = Number(subject.slice(FLAGS_KEY_PREFIX.length + 1));
  return isUserId(userId) ? userId : null;
}

/** A KV message disables its user unless it is a deletion (nats.js marks them DEL or PURGE). */
const disables = (headers: MsgHdrs | undefined) => {
  const operation = headers?.get('KV-Operation');
  return !operation || operation === 'PUT';
};

/**
 * Users an operator disabled (KV `auction_user_flags`, key `u<userId>`):
 * every gateway refuses their tokens and sign-ins at once and ends their
 * open connections. Followed without a consumer (the gateway holds no
 * consumer rights): the bucket's stream re-publishes every change to
 * `auction.user_flags.<key>`, which a StreamFollower delivers in order; the
 * current set is read from the stream's subjects (STREAM.INFO with a subject
 * filter) and a direct get of each key's last message. A gap in the changes
 * is not read back by sequence (the gateway may read this bucket by key
 * only): the set is read again instead. Each user's last known change
 * (stream sequence) keeps an older answer from undoing a newer one. Bounded
 * by the number of keys, which only operators can grow.
 */
export class DisabledUsers {
  private readonly users = new Set<number>();
  /** Per user with a key, the stream sequence of the newest change applied. */
  private readonly changes = new Map<number, number>();
  private follower: StreamFollower | null = null;
  private onDisabled: (userId: number) => void = () => undefined;
  private loading: Promise<void> | null = null;
  private loadAgain = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: { nc: NatsConnection; jsm: JetStreamManager; logger: Logger }) {}

  /** Resolves once every current entry is known (and changes are followed from before it was read). */
  async start(onDisabled: (userId: number) => void): Promise<void> {
    this.onDisabled = onDisabled;
    this.follower = new StreamFollower({
      nc: this.o.nc,
      jsm: this.o.jsm,
      stream: FLAGS_STREAM,
      republish: USER_FLAGS_REPUBLISH,
      refill: false,
      logger: this.o.logger,
      onMessage: (message) => {
        const userId = userOfSubject(message.subject);
        if (userId !== null) this.apply(userId, message.seq, disables(message.headers));
      },
      onReset: () => this.reload(),
    });
    // Follow first, then read: a change made while reading arrives as well.
    await this.follower.start();
    await this.load();
  }

  has(userId: number): boolean {
    return this.users.has(userId);
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.follower?.stop();
  }

  private apply(userId: number, seq: number, disabled: boolean): void {
    if ((this.changes.get(userId) ?? 0) >= seq) return;
    this.changes.set(userId, seq);
    if (!disabled) {
      this.users.delete(userId);
    } else if (!this.users.has(userId)) {
      this.users.add(userId);
      this.o.logger.warn({ userId }, 'user disabled by an operator');
      this.onDisabled(userId);
    }
  }

  /** Reads the whole set: every key the stream holds and its last message. */
  private async load(): Promise<void> {
    const info = await this.o.jsm.streams.info(FLAGS_STREAM, { subjects_filter: `${FLAGS_KEY_PREFIX}>` });
    const listedAt = info.state.last_seq;
    const subjects = Object.keys(info.state.subjects ?? {});
    const listed = new Set<number>();
    for (let i = 0; i < subjects.length && !this.stopped; i += LOAD_PARALLEL) {
      await Promise.all(
        subjects.slice(i, i + LOAD_PARALLEL).map(async (subject) => {
          const userId = userOfSubject(subject);
          if (userId === null) return;
          listed.add(userId);
          const last = await this.o.jsm.direct.getMessage(FLAGS_STREAM, { last_by_subj: subject });
          if (last) this.apply(userId, last.seq, disables(last.header));
        }),
      );
    }
    // A user whose key is gone altogether (the stream purged) is enabled, unless a newer change came live.
    for (const userId of [...this.users]) {
      if (!listed.has(userId) && (this.changes.get(userId) ?? 0) <= listedAt) {
        this.users.delete(userId);
        this.changes.delete(userId);
      }
    }
  }

  /** After a gap in the changes: reads the set again (one load at a time; a failed one is retried). */
  private reload(): void {
    if (this.stopped) return;
    if (this.loading) {
      this.loadAgain = true;
      return;
    }
    this.loading = (async () => {
      do {
        this.loadAgain = false;
        await this.load();
      } while (this.loadAgain && !this.stopped);
    })()
      .catch((error: unknown) => {
        this.o.logger.warn({ err: error }, 'cannot read the disabled users again; retrying');
        this.retryTimer = setTimeout(() => this.reload(), RELOAD_RETRY_MS);
      })
      .finally(() => {
        this.loading = null;
      });
  }
}
