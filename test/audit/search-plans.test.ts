import Database from 'better-sqlite3';
import fc from 'fast-check';
import t from 'tap';
import { SCHEMA, SEARCH_SCHEMA } from '../../audit/projection.js';
import { AuditQueries } from '../../audit/queries.js';
import type { Auction } from '../../protocol/public.js';

/**
 * A search walks its sort's index when the full text matches many rows and
 * sorts the matches when they are few (audit/queries.ts). Both plans, and
 * paging through either with its cursors, must give exactly what a model
 * filtering and sorting every row gives.
 */
const WORDS = ['lamp', 'clock', 'brass', 'oak', 'lampshade'];
const STATUSES = ['open', 'closed', 'scheduled', 'cancelled'] as const;
const SORTS = {
  ending_soon: { field: 'endsAt', descending: false },
  newest: { field: 'createdAt', descending: true },
  price: { field: 'price', descending: false },
} as const;

type Row = {
  id: number;
  title: string;
  status: string;
  sellerId: number;
  endsAt: number;
  createdAt: number;
  price: number;
};

const rowArb = fc.record({
  words: fc.subarray(WORDS, { minLength: 1 }),
  status: fc.constantFrom(...STATUSES),
  sellerId: fc.integer({ min: 1, max: 3 }),
  // Few distinct values: equal sort values are ordered by id, and the cursor must page through them.
  endsAt: fc.integer({ min: 1, max: 6 }),
  createdAt: fc.integer({ min: 1, max: 6 }),
  price: fc.integer({ min: 1, max: 6 }),
});

function database(rows: Row[]) {
  const db = new Database(':memory:');
  db.exec(SCHEMA);
  db.exec(SEARCH_SCHEMA);
  const insert =
    db.prepare(`INSERT INTO auctions (id, seller_id, title, starting_price, reserve_price, starts_at, ends_at,
    soft_close_seconds, status, price, version, created_at, created_seq) VALUES (?, ?, ?, 1, 0, 0, ?, 0, ?, ?, 1, ?, ?)`);
  const fts = db.prepare('INSERT INTO auctions_fts (rowid, title, description) VALUES (?, ?, ?)');
  for (const r of rows) {
    insert.run(r.id, r.sellerId, r.title, r.endsAt, r.status, r.price, r.createdAt, r.id);
    fts.run(r.id, r.title, '');
  }
  return db;
}

function allPages(queries: AuditQueries, request: Record<string, unknown>): number[] {
  const ids: number[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1_000; pages++) {
    const page = queries.search({ op: 'search', ...request, cursor, limit: 2 });
    ids.push(...page.auctions.map((a: Auction) => a.id));
    if (!page.next) return ids;
    cursor = page.next;
  }
  throw new Error('the cursors did not end');
}

t.test('walking the index and sorting the matches give the model, page by page', (t) => {
  fc.assert(
    fc.property(
      fc.array(rowArb, { minLength: 0, maxLength: 40 }),
      fc.subarray(['lamp', 'clock', 'brass', 'oak', 'lam'], { minLength: 1, maxLength: 2 }),
      fc.option(fc.constantFrom(...STATUSES), { nil: undefined }),
      fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
      fc.constantFrom<keyof typeof SORTS>('ending_soon', 'newest', 'price'),
      (specs, words, status, sellerId, sort) => {
        const rows: Row[] = specs.map((s, i) => ({ ...s, id: 1 + i * 8, title: s.words.join(' ') }));
        const db = database(rows);
        try {
          const q = words.join(' ');
          // Every word must be in the title; the last one may be a prefix.
          const matches = (title: string) => {
            const tokens = title.split(' ');
            return words.every((w, i) =>
              tokens.some((tok) => (i === words.length - 1 ? tok.startsWith(w) : tok === w)),
            );
          };
          const { field, descending } = SORTS[sort];
          const model = rows
            .filter((r) => matches(r.title) && (status === undefined || r.status === status))
            .filter((r) => sellerId === undefined || r.sellerId === sellerId)
            .sort((a, b) => (descending ? -1 : 1) * (a[field] - b[field] || a.id - b.id))
            .map((r) => r.id);
          const request = { q, status, sellerId, sort };
          const walked = allPages(new AuditQueries(db, 1), request);
          const sorted = allPages(new AuditQueries(db, Number.MAX_SAFE_INTEGER), request);
          t.same(walked, model, `walked: ${JSON.stringify(request)}`);
          t.same(sorted, model, `sorted: ${JSON.stringify(request)}`);
        } finally {
          db.close();
        }
      },
    ),
    { numRuns: 300 },
  );
  t.end();
});

t.test('a dense search walks the sort index; a sparse one does not', (t) => {
  const rows: Row[] = Array.from({ length: 50 }, (_, i) => ({
    id: i + 1,
    title: i < 45 ? `lamp ${i}` : `clock ${i}`,
    status: 'open',
    sellerId: 1,
    endsAt: 100 - i,
    createdAt: i,
    price: i,
  }));
  const db = database(rows);
  t.teardown(() => db.close());
  const plans: string[] = [];
  const queries = new AuditQueries(db, 10);
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    if (sql.startsWith('SELECT a.*')) plans.push(sql);
    return prepare(sql);
  };
  t.same(
    queries.search({ op: 'search', q: 'lamp', limit: 3 }).auctions.map((a) => a.id),
    [45, 44, 43],
  );
  t.same(
    queries.search({ op: 'search', q: 'clock', limit: 3 }).auctions.map((a) => a.id),
    [50, 49, 48],
  );
  t.match(plans[0], /INDEXED BY auctions_ends/, '45 matches of 10 or more: the walk');
  t.notMatch(plans[1], /INDEXED BY/, '5 matches: the sort');
  t.end();
});

t.test('past the sample, density is estimated from where the first matches sit among the ids', (t) => {
  // 6,000 auctions: "lamp" in every second title (3,000), "oak" in every fifth (1,200), spread as listings are.
  const rows: Row[] = Array.from({ length: 6_000 }, (_, i) => ({
    id: i + 1,
    title: `${i % 2 === 0 ? 'lamp' : 'chair'} ${i % 5 === 0 ? 'oak' : 'brass'}`,
    status: 'open',
    sellerId: 1,
    endsAt: 10_000 - i,
    createdAt: i,
    price: i,
  }));
  const db = database(rows);
  t.teardown(() => db.close());
  const plans: string[] = [];
  const queries = new AuditQueries(db); // DENSE_MATCHES_MIN 2,000, a sample of DENSITY_SAMPLE 200
  const prepare = db.prepare.bind(db);
  db.prepare = (sql: string) => {
    if (sql.startsWith('SELECT a.*')) plans.push(sql);
    return prepare(sql);
  };
  t.equal(queries.search({ op: 'search', q: 'lamp', limit: 2 }).auctions.length, 2);
  t.equal(queries.search({ op: 'search', q: 'oak', limit: 2 }).auctions.length, 2);
  t.match(plans[0], /INDEXED BY auctions_ends/, 'about 3,000 matches estimated: the walk');
  t.notMatch(plans[1], /INDEXED BY/, 'about 1,200 estimated: the sort');
  t.end();
});
