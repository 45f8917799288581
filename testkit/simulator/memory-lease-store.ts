import { RevisionConflictError, type LeaseEntry, type LeaseStorePort } from '../../shard/ports.js';
import { Connection, type Wire } from './network.js';
import type { Scheduler, SimNode } from './scheduler.js';

/** How long a write waits for its answer when the caller names no timeout (the KV client's default). */
export const WRITE_TIMEOUT_MS = 1_000;

/** Revisions kept per key for the checker; leases renew a few times a second, so this is minutes of a run. */
export const HISTORY_MAX = 10_000;

/** What the fault hook makes of one write: answered, applied with its answer lost, or lost on the way in. */
export type KvWriteFault = 'ok' | 'applied-timeout' | 'lost-timeout';

export type MemoryKvOptions = {
  /** One way of one message; drawn per message. */
  latencyMs?: () => number;
  writeFault?: () => KvWriteFault;
  historyMax?: number;
};

/** One revision of a key as the checker sees it: what was written, and when (simulated time). */
export type KvRecord = LeaseEntry & { at: number };

const WRITE_FATE = { ok: 'answered', 'applied-timeout': 'unanswered', 'lost-timeout': 'lost' } as const;

type Watcher = { key: string; node: SimNode; down: Wire; onEntry: (entry: LeaseEntry) => void; stopped: boolean };

/** A copy of an entry: holders may not change what the bucket stores. */
const copyOf = (entry: LeaseEntry): LeaseEntry => ({
  revision: entry.revision,
  value: entry.value && entry.value.slice(),
});

/**
 * The lease bucket (NATS KV): one revision counter for the whole bucket (a
 * revision is the bucket stream's sequence), compare-and-set writes on it,
 * and watchers that hear every later revision of their key, in order. The
 * bucket runs as world events; each process reaches it through its port.
 */
export class MemoryKv {
  private revision = 0;
  private readonly entries = new Map<string, LeaseEntry>();
  private readonly histories = new Map<string, KvRecord[]>();
  private readonly watchers = new Set<Watcher>();
  readonly latencyMs: () => number;
  readonly writeFault: () => KvWriteFault;
  private readonly historyMax: number;

  constructor(
    readonly scheduler: Scheduler,
    options: MemoryKvOptions = {},
  ) {
    this.latencyMs = options.latencyMs ?? (() => 1);
    this.writeFault = options.writeFault ?? (() => 'ok');
    this.historyMax = options.historyMax ?? HISTORY_MAX;
  }

  /** A process's view of the bucket, through its own connection. */
  port(node: SimNode): LeaseStorePort {
    return new MemoryKvPort(this, node);
  }

  /** The key's revisions in order, the newest HISTORY_MAX of them (checker access). */
  history(key: string): readonly KvRecord[] {
    return this.histories.get(key) ?? [];
  }

  /** The key's entry now, or null if it was never written. */
  read(key: string): LeaseEntry | null {
    const entry = this.entries.get(key);
    return entry ? copyOf(entry) : null;
  }

  /** Fails unless the key has no value (never written, or deleted). */
  create(key: string, value: Uint8Array): number {
    const current = this.entries.get(key);
    if (current && current.value !== null)
      throw new RevisionConflictError(`key ${key} exists at revision ${current.revision}`);
    return this.write(key, value.slice());
  }

  /** Whatever the key holds. */
  put(key: string, value: Uint8Array): number {
    return this.write(key, value.slice());
  }

  /** Fails unless the key is at `revision`. */
  update(key: string, value: Uint8Array, revision: number): number {
    this.expect(key, revision);
    return this.write(key, value.slice());
  }

  /** Fails unless the key is at `revision`; leaves a delete marker at a new revision. */
  delete(key: string, revision: number): void {
    this.expect(key, revision);
    this.write(key, null);
  }

  watch(key: string, node: SimNode, down: Wire, onEntry: (entry: LeaseEntry) => void): { stop(): void } {
    const watcher: Watcher = { key, node, down, onEntry, stopped: false };
    this.watchers.add(watcher);
    return {
      stop: () => {
        watcher.stopped = true;
        this.watchers.delete(watcher);
      },
    };
  }

  private expect(key: string, revision: number): void {
    const current = this.entries.get(key)?.revision ?? 0;
    if (current !== revision)
      throw new RevisionConflictError(`wrong last sequence: key ${key} is at revision ${current}, not ${revision}`);
  }

  private write(key: string, value: Uint8Array | null): number {
    const entry = { revision: ++this.revision, value };
    this.entries.set(key, entry);
    this.record(key, entry);
    this.notify(key, entry);
    return entry.revision;
  }

  private record(key: string, entry: LeaseEntry): void {
    let history = this.histories.get(key);
    if (!history) this.histories.set(key, (history = []));
    history.push({ ...copyOf(entry), at: this.scheduler.now });
    if (history.length > this.historyMax) history.splice(0, history.length - this.historyMax);
  }

  /** Pushes the revision to the key's watchers; a dead watcher is forgotten, a stopped one hears nothing more. */
  private notify(key: string, entry: LeaseEntry): void {
    for (const watcher of [...this.watchers]) {
      if (watcher.key !== key) continue;
      if (watcher.node.dead) {
        this.watchers.delete(watcher);
        continue;
      }
      const seen = copyOf(entry);
      watcher.down.send(() => {
        if (!watcher.stopped) watcher.onEntry(seen);
      });
    }
  }
}

/** One process's connection to the bucket. */
class MemoryKvPort implements LeaseStorePort {
  private readonly connection: Connection;

  constructor(
    private readonly kv: MemoryKv,
    private readonly node: SimNode,
  ) {
    this.connection = new Connection(kv.scheduler, node, kv.latencyMs);
  }

  get(key: string): Promise<LeaseEntry | null> {
    return this.connection.ask(() => this.kv.read(key));
  }

  /** The watch starts when the request reaches the bucket: revisions from then on are delivered. */
  watch(key: string, onEntry: (entry: LeaseEntry) => void): Promise<{ stop(): void }> {
    return this.connection.ask(() => this.kv.watch(key, this.node, this.connection.down, onEntry));
  }

  create(key: string, value: Uint8Array): Promise<number> {
    const sent = value.slice();
    return this.write(WRITE_TIMEOUT_MS, () => this.kv.create(key, sent));
  }

  update(key: string, value: Uint8Array, revision: number, timeoutMs = WRITE_TIMEOUT_MS): Promise<number> {
    const sent = value.slice();
    return this.write(timeoutMs, () => this.kv.update(key, sent, revision));
  }

  delete(key: string, revision: number): Promise<void> {
    return this.write(WRITE_TIMEOUT_MS, () => this.kv.delete(key, revision));
  }

  put(key: string, value: Uint8Array, timeoutMs: number): Promise<number> {
    const sent = value.slice();
    return this.write(timeoutMs, () => this.kv.put(key, sent));
  }

  private write<T>(timeoutMs: number, apply: () => T): Promise<T> {
    return this.connection.ask(apply, timeoutMs, WRITE_FATE[this.kv.writeFault()]);
  }
}
