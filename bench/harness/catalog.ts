/**
 * The titles of the auctions `make bench-scale` lists and the searches it
 * runs over them: a title is a few words from small vocabularies plus a lot
 * number of its own (so the full-text index holds one token per auction, as
 * real titles with serial numbers and model names do). Searches mix a
 * common word (about one title in 40), a pair of words (one in 640) and a
 * single lot (one title): the broad queries find many rows to order, the
 * narrow ones few rows scattered over the whole index.
 */
const ADJECTIVES = [
  'vintage',
  'antique',
  'rare',
  'signed',
  'boxed',
  'restored',
  'mint',
  'handmade',
  'early',
  'limited',
  'original',
  'faded',
  'large',
  'small',
  'carved',
  'painted',
];
const MATERIALS = ['brass', 'oak', 'silver', 'porcelain', 'leather', 'glass', 'walnut', 'copper', 'linen', 'steel'];
const NOUNS = [
  'lamp',
  'clock',
  'camera',
  'guitar',
  'teapot',
  'mirror',
  'chair',
  'compass',
  'globe',
  'typewriter',
  'radio',
  'violin',
  'bracelet',
  'vase',
  'telescope',
  'desk',
  'chest',
  'painting',
  'map',
  'watch',
  'kettle',
  'lantern',
  'bicycle',
  'sewing-machine',
  'record-player',
  'candlestick',
  'rug',
  'bookcase',
  'stool',
  'jug',
  'sextant',
  'microscope',
  'banjo',
  'trumpet',
  'pendant',
  'brooch',
  'tray',
  'bowl',
  'dresser',
  'fountain-pen',
];

/** A deterministic spread of index n over a vocabulary (neighbouring lots get unrelated words). */
const pick = <T>(words: readonly T[], n: number, salt: number): T =>
  words[Math.floor(((Math.imul(n ^ Math.imul(salt, 0x85ebca6b), 0x9e3779b1) >>> 0) / 2 ** 32) * words.length)];

export function auctionTitle(n: number): string {
  return `${pick(ADJECTIVES, n, 1)} ${pick(MATERIALS, n, 2)} ${pick(NOUNS, n, 3)}, lot ${n}`;
}

/** The i-th search of a run over `lots` listed auctions: a common word, a pair, or one lot, in turn. */
export function searchQuery(i: number, lots: number): string {
  if (i % 3 === 0) return pick(NOUNS, i, 4);
  if (i % 3 === 1) return `${pick(MATERIALS, i, 5)} ${pick(NOUNS, i, 6)}`;
  return `lot ${1 + ((i * 7_919) % lots)}`;
}
