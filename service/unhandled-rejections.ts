import type { Logger } from 'pino';

/**
 * A promise rejection nobody handled is a bug in the code that started the
 * promise, not a broken invariant of the state it guards: Node's default
 * (exit the whole process) turned one such bug in a request handler into a
 * one-request denial of service. Every service process therefore logs and
 * counts them instead, and keeps serving. Uncaught *exceptions* keep Node's
 * default: they may leave state half-changed, and crashing loudly is then the
 * safe answer (as TigerBeetle does).
 */
export function guardUnhandledRejections(
  logger: Logger,
  count: () => void = () => undefined,
): { readonly total: number } {
  const seen = { total: 0 };
  process.on('unhandledRejection', (reason) => {
    seen.total++;
    count();
    logger.error(
      { err: reason, unhandledRejections: seen.total },
      'unhandled promise rejection (a bug: the process keeps running)',
    );
  });
  return seen;
}
