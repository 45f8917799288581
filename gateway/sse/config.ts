/** The SSE transport's settings (`GET /v1/auctions/:id/events`). */
export const SSE_CONFIG = {
  /** A comment this often keeps proxies from closing an idle stream. */
  heartbeatMs: 15_000,
  /** How long a client waits before reconnecting (the stream's `retry:`). */
  retryMs: 1_000,
  headers: { 'Content-Type': 'text/event-stream', 'X-Accel-Buffering': 'no' } as Record<string, string>,
};

/** A Last-Event-ID (or `lastEventId`) is a version: digits only (`1e3` is not 1000), below 2^53. */
export function resumeVersion(text: string): number {
  return /^[0-9]{1,16}$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : 0;
}
