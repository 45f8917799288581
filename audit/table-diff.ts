import type { Database } from 'better-sqlite3';

/**
 * The first difference, in key order, between table `table` of the
 * databases attached as `left` (the audit's file) and `right` (the stream
 * projected again), or null. Both share one connection, so SQLite joins them
 * by their integer keys: at 1.25M auctions a shard, reading every row of both
 * into JavaScript to compare them took most of `audit verify`'s time.
 * Columns compare with IS (NULL equals NULL; 1 equals 1.0, as JavaScript's
 * numbers do).
 */
export function firstDifference(db: Database, table: string, key: string, left: string, right: string): string | null {
  const columns = (db.prepare(`SELECT name FROM pragma_table_info(?, ?)`).pluck().all(table, right) as string[]).filter(
    (c) => c !== key,
  );
  const differs = columns.map((c) => `l."${c}" IS NOT r."${c}"`).join(' OR ');
  const inLeft = db
    .prepare(
      `SELECT l."${key}" FROM ${left}."${table}" l LEFT JOIN ${right}."${table}" r ON r."${key}" = l."${key}"
       WHERE r."${key}" IS NULL${differs ? ` OR ${differs}` : ''} ORDER BY l."${key}" LIMIT 1`,
    )
    .pluck()
    .get() as number | undefined;
  const onlyInRight = db
    .prepare(
      `SELECT r."${key}" FROM ${right}."${table}" r LEFT JOIN ${left}."${table}" l ON l."${key}" = r."${key}"
       WHERE l."${key}" IS NULL ORDER BY r."${key}" LIMIT 1`,
    )
    .pluck()
    .get() as number | undefined;
  if (inLeft === undefined && onlyInRight === undefined) return null;
  if (onlyInRight !== undefined && (inLeft === undefined || onlyInRight < inLeft))
    return `${table} ${key} ${onlyInRight}: missing from the file`;
  const row = (schema: string) =>
    db.prepare(`SELECT * FROM ${schema}."${table}" WHERE "${key}" = ?`).get(inLeft) as
      Record<string, unknown> | undefined;
  const [a, b] = [row(left), row(right)];
  if (!a || !b) return `${table} ${key} ${inLeft}: in the file but not in the stream`;
  // SQLite saw a difference JavaScript's numbers may not show (an integer past 2^53): name the row at least.
  const column = columns.find((c) => !Object.is(a[c], b[c]));
  if (column === undefined) return `${table} ${key} ${inLeft}: differs from the stream`;
  return `${table} ${key} ${inLeft}: ${column} is ${JSON.stringify(a[column])} in the file, ${JSON.stringify(b[column])} from the stream`;
}
