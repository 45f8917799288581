/**
 * Promises that wait for a condition on state that changes over time (a
 * process's output, a socket's messages, a load's answer count): each check
 * runs at once and again at every `wake()`, and a waiter that is never
 * satisfied rejects after its timeout with a message saying what it saw.
 */
export class Waiters {
  private readonly checks = new Set<() => void>();

  /** Call after every change a waiter may be waiting for. */
  wake(): void {
    for (const check of [...this.checks]) check();
  }

  /**
   * Resolves with the first value `check` returns other than undefined; a
   * `check` that throws rejects with its error; after `timeoutMs`, rejects
   * with `timeoutMessage()`.
   */
  until<T>(check: () => T | undefined, timeoutMs: number, timeoutMessage: () => string): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = () => {
        clearTimeout(timer);
        this.checks.delete(run);
      };
      const run = () => {
        let value: T | undefined;
        try {
          value = check();
        } catch (error) {
          finish();
          reject(error instanceof Error ? error : new Error(String(error)));
          return;
        }
        if (value !== undefined) {
          finish();
          resolve(value);
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(timeoutMessage()));
      }, timeoutMs);
      this.checks.add(run);
      run();
    });
  }
}
