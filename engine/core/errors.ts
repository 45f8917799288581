/**
 * Thrown when a caller breaks the core's contract (a sequence gap, time going
 * backwards, a corrupt snapshot). It means the process must not go on deciding
 * commands: business outcomes are never exceptions, they are reasons.
 */
export class InvariantError extends Error {
  readonly code = 'invariant';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InvariantError';
  }
}

export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}
