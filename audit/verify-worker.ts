import { setPriority } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { roleConnectOptions } from '../protocol/cluster.js';
import type { VerifyResult } from '../protocol/operations.js';
import { verifyShard } from './verify.js';

/**
 * `audit verify` asked of a running audit (auctionctl audit verify), on a
 * worker thread of its own with its own NATS connection. On the thread that
 * writes the files it replayed 1.25M creations a shard into memory and joined
 * the tables: 196 s for 10M auctions (make bench-scale run 14), during which
 * the shard's file was written by nobody. The worker runs at nice 10, below
 * the writing thread and the read workers, whose work is the product's.
 */
type VerifyJob = { kind: 'audit-verify'; natsUrl: string; shard: number; file: string };
type VerifyAnswer = { result: VerifyResult } | { error: string };

const VERIFY_NICE = 10;

export function verifyOnWorker(natsUrl: string, shard: number, file: string): Promise<VerifyResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { kind: 'audit-verify', natsUrl, shard, file } satisfies VerifyJob,
    });
    worker.once('message', (answer: VerifyAnswer) => {
      if ('result' in answer) resolve(answer.result);
      else reject(new Error(answer.error));
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the verification worker exited with ${code} before it answered`)));
  });
}

const job = isMainThread ? null : (workerData as VerifyJob | null);
if (job?.kind === 'audit-verify') {
  try {
    setPriority(VERIFY_NICE);
  } catch {
    // Where threads cannot be given their own priority, it verifies all the same.
  }
  let answer: VerifyAnswer;
  const nc = await connect({
    servers: job.natsUrl.split(','),
    name: `audit verify ${job.shard}`,
    maxReconnectAttempts: 10,
    ...roleConnectOptions('audit'),
  });
  try {
    answer = { result: await verifyShard(nc, jetstream(nc), await jetstreamManager(nc), job.shard, job.file) };
  } catch (error) {
    answer = { error: error instanceof Error ? error.message : String(error) };
  } finally {
    await nc.close();
  }
  parentPort!.postMessage(answer);
}
