/**
 * Retries `attempt` until it resolves, for conditions that offer no event to
 * await (a JetStream leader election, a port being freed). Bounded in time;
 * the last error is rethrown with the elapsed time when the deadline passes.
 */
export async function eventually<T>(
  attempt: () => Promise<T>,
  { timeoutMs = 20_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const started = Date.now();
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() - started >= timeoutMs) {
        throw new Error(`still failing after ${Date.now() - started} ms: ${String(error)}`, { cause: error });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
