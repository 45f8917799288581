import type { KV } from '@nats-io/kv';
import { isWrongLastSequence } from '../protocol/nats-errors.js';
import { RevisionConflictError, type LeaseEntry, type LeaseStorePort } from '../shard/ports.js';

/**
 * The lease store on a NATS KV bucket: revisions are the bucket's stream
 * sequences, compare-and-set writes use them, and a "wrong last sequence"
 * answer is the conflict the port names (anything else may have been applied).
 */
export class KvLeaseStore implements LeaseStorePort {
  constructor(private readonly kv: KV) {}

  async get(key: string): Promise<LeaseEntry | null> {
    const entry = await this.kv.get(key);
    if (!entry) return null;
    return { revision: entry.revision, value: entry.operation === 'PUT' ? entry.value : null };
  }

  async watch(key: string, onEntry: (entry: LeaseEntry) => void): Promise<{ stop(): void }> {
    const iterator = await this.kv.watch({ key });
    void (async () => {
      for await (const e of iterator) onEntry({ revision: e.revision, value: e.operation === 'PUT' ? e.value : null });
    })().catch(() => {
      // The watch ends with the connection; the lease judges expiry by its own clock meanwhile.
    });
    return { stop: () => iterator.stop() };
  }

  create(key: string, value: Uint8Array): Promise<number> {
    return conflicts(this.kv.create(key, value));
  }

  update(key: string, value: Uint8Array, revision: number, timeoutMs?: number): Promise<number> {
    return conflicts(this.kv.update(key, value, revision, timeoutMs));
  }

  delete(key: string, revision: number): Promise<void> {
    return conflicts(this.kv.delete(key, { previousSeq: revision }));
  }

  put(key: string, value: Uint8Array, timeoutMs: number): Promise<number> {
    return this.kv.put(key, value, { timeout: timeoutMs });
  }
}

async function conflicts<T>(write: Promise<T>): Promise<T> {
  try {
    return await write;
  } catch (error) {
    if (isWrongLastSequence(error)) throw new RevisionConflictError((error as Error).message, { cause: error });
    throw error;
  }
}
