import t from 'tap';
import { readFileSync } from 'node:fs';
import { decodeLogBatch, encodeLogBatch } from '../../protocol/binary/log-format.js';
import {
  decodeCommandBatch,
  decodeResultBatch,
  encodeCommandBatch,
  encodeResultBatch,
} from '../../protocol/binary/command-format.js';
import type { CommandReply, LogBatch } from '../../protocol/index.js';

/**
 * The committed test vectors of docs/wire-format.md: each .bin decodes to
 * its .json, and the .json encodes to the same bytes. A change to a format
 * that is not a new version fails here.
 */
const dir = new URL('../../../test/protocol/vectors/', import.meta.url);
const vector = (name: string) => ({
  bytes: new Uint8Array(readFileSync(new URL(`${name}.bin`, dir))),
  value: JSON.parse(readFileSync(new URL(`${name}.json`, dir), 'utf8')) as unknown,
});

t.test('the log batch vector', (t) => {
  const { bytes, value } = vector('log-batch-v1');
  t.equal(bytes.length, 434);
  t.strictSame(decodeLogBatch(bytes), value);
  t.strictSame(encodeLogBatch(value as LogBatch), bytes);
  t.end();
});

t.test('the commands batch vector', (t) => {
  const { bytes, value } = vector('commands-batch-v1');
  t.equal(bytes.length, 126);
  t.strictSame(decodeCommandBatch(bytes), value);
  t.strictSame(encodeCommandBatch(value as unknown[]), bytes);
  t.end();
});

t.test('the results batch vector', (t) => {
  const { bytes, value } = vector('results-batch-v1');
  t.equal(bytes.length, 141);
  t.strictSame(decodeResultBatch(bytes), value);
  t.strictSame(encodeResultBatch(value as CommandReply), bytes);
  t.end();
});
