/**
 * Keyset cursors of the search (`GET /v1/auctions`): the sort value and id
 * of the last row returned. The audit reads them; the gateway makes the one
 * of a scatter-gathered page from the rows it merged. The same cursor works
 * on every shard. Opaque to clients (base64url JSON).
 */
export function encodeCursor(sortValue: number, id: number): string {
  return Buffer.from(JSON.stringify([sortValue, id])).toString('base64url');
}

/** The cursor's position; null for none (absent or empty); undefined when it is not a cursor. */
export function decodeCursor(cursor: unknown): [number, number] | null | undefined {
  if (cursor === undefined || cursor === null || cursor === '') return null;
  if (typeof cursor !== 'string') return undefined;
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString()) as unknown;
    if (Array.isArray(value) && value.length === 2 && value.every((v) => Number.isSafeInteger(v)))
      return value as [number, number];
  } catch {
    // Fall through.
  }
  return undefined;
}
