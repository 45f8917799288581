import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuctionCore } from '../../engine/core/index.js';
import { SnapshotStore } from '../../shard/snapshot-store.js';
import {
  imageByteLength,
  snapshotFileBytes,
  writeSnapshotFile,
  WORKER_IMAGE_BYTES_MIN,
} from '../../shard/snapshot-encoder.js';

const config = { auctionsMax: 4_096, idempotencyEntriesMax: 8_192 };

/** A core with auctions and bids in it (remembered bids, a reserve, a scheduled start). */
function busyCore(): { core: AuctionCore; ids: number[] } {
  const core = new AuctionCore({ shard: 3, ...config });
  const t0 = 1_800_000_000_000;
  let seq = 0;
  const ids: number[] = [];
  for (let i = 0; i < 200; i++) {
    const outcome = core.apply(
      {
        type: 'create',
        sellerId: 1,
        startingPrice: 100,
        reservePrice: i % 3 === 0 ? 5_000 : 0,
        startsAt: i % 7 === 0 ? t0 + 60_000 : t0,
        softCloseSeconds: 30,
        endsAt: t0 + 3_600_000,
      },
      ++seq,
      t0,
    );
    if (outcome.status === 'accepted' && outcome.type === 'create') ids.push(outcome.auctionId);
  }
  for (let i = 0; i < 3_000; i++) {
    core.apply(
      { type: 'bid', auctionId: ids[i % ids.length], bidderId: 2 + (i % 50), bidId: i + 1, maxBid: 200 + i * 3 },
      ++seq,
      t0 + 1,
    );
  }
  return { core, ids };
}

t.test('a snapshot the store writes is the file the event loop would have written, and restores', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'snapshot-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { core, ids } = busyCore();
  const store = new SnapshotStore(dir);
  const expected = snapshotFileBytes({ lastSeq: core.lastSeq, streamSeq: 42 }, core.image());
  const saving = store.save(core.image(), { lastSeq: core.lastSeq, streamSeq: 42 });
  // The image was taken when save was called: what the core decides next is not in this snapshot.
  const lastSeqAtSave = core.lastSeq;
  const hashAtSave = core.stateHash();
  core.apply(
    { type: 'bid', auctionId: ids[1], bidderId: 9, bidId: 99_999, maxBid: 10_000_000 },
    core.lastSeq + 1,
    1_800_000_000_002,
  );
  t.not(core.stateHash(), hashAtSave, 'the core moved on while the snapshot was being written');
  const meta = await saving;
  t.same(meta, { lastSeq: lastSeqAtSave, streamSeq: 42 });
  const [file] = store.files();
  t.ok(file, 'one file written');
  t.same(Buffer.from(readFileSync(join(dir, file))), Buffer.from(expected), 'byte for byte the format of before');
  const loaded = store.loadNewest(config, () => t.fail('no file may be skipped'));
  t.ok(loaded);
  t.equal(loaded!.core.lastSeq, lastSeqAtSave);
  t.equal(loaded!.core.stateHash(), hashAtSave, 'the restored state is the state at the save');
});

t.test('a large image is encoded and written on a worker thread, a small one at once, to the same bytes', async (t) => {
  const { core } = busyCore();
  const dir = mkdtempSync(join(tmpdir(), 'snapshot-writer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const image = core.image();
  t.ok(imageByteLength(image) < WORKER_IMAGE_BYTES_MIN, `the busy core's image is small (${imageByteLength(image)} B)`);
  const meta = { lastSeq: core.lastSeq, streamSeq: 7 };
  t.same(await writeSnapshotFile(meta, image, join(dir, 'small')), { workerNice: null }, 'written at once');
  t.same(readFileSync(join(dir, 'small')), Buffer.from(snapshotFileBytes(meta, image)));
  t.equal(statSync(join(dir, 'small')).mode & 0o777, 0o600, 'owner-only');
  // A million-auction shard's records alone are 32 MiB: padded out here to cross the threshold.
  const largeImage = () => ({ ...core.image(), records: new Uint8Array(WORKER_IMAGE_BYTES_MIN + 32 * 7).fill(3) });
  const large = largeImage();
  t.ok(imageByteLength(large) >= WORKER_IMAGE_BYTES_MIN);
  const threadsBefore = process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
  const writing = writeSnapshotFile(meta, large, join(dir, 'large'));
  t.ok(
    process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length > threadsBefore,
    'a worker thread is writing it',
  );
  t.equal(large.records.byteLength, 0, 'its buffers moved to the worker (transferred, not copied)');
  await writing;
  t.same(
    readFileSync(join(dir, 'large')),
    Buffer.from(snapshotFileBytes(meta, largeImage())),
    'the same bytes as at once',
  );
  t.equal(statSync(join(dir, 'large')).mode & 0o777, 0o600, 'owner-only');
});
