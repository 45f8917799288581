import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import {
  AuthorizationError,
  NoRespondersError,
  PermissionViolationError,
  RequestError,
  TimeoutError,
  UserAuthenticationExpiredError,
} from '@nats-io/transport-node';

/**
 * NATS failures every process sorts the same way, by nats.js's error classes
 * and JetStream's error codes (never by message text where a class exists).
 */

/** JetStream's "wrong last msg ID" (Nats-Expected-Last-Msg-Id failed); nats.js names no constant for it. */
const STREAM_WRONG_LAST_MSG_ID = 10_070;

/** A publish refused by one of its expectations (last sequence, or last msg id): someone else appended first. */
export function isWrongLastSequence(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown ||
      error.code === STREAM_WRONG_LAST_MSG_ID)
  );
}

export function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}

/** Whether NATS refused a publish or subscription for lack of permission (nats.js wraps it in a request error). */
export function isPermissionViolation(error: unknown): boolean {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof PermissionViolationError || /permissions violation/i.test(e.message)) return true;
  }
  return false;
}

/** Why a NATS call failed, in the terms an operator acts on. */
export type NatsFailure = 'forbidden' | 'unauthenticated' | 'no-responders' | 'timeout' | 'other';

/**
 * Sorts a failure by the nats.js error classes in its cause chain (a request
 * error wraps the timeout, the missing responders or the permission violation
 * that caused it).
 */
export function natsFailureOf(error: unknown): NatsFailure {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof PermissionViolationError) return 'forbidden';
    if (e instanceof AuthorizationError || e instanceof UserAuthenticationExpiredError) return 'unauthenticated';
    if (e instanceof NoRespondersError || (e instanceof RequestError && e.isNoResponders())) return 'no-responders';
    if (e instanceof TimeoutError) return 'timeout';
  }
  return 'other';
}

/**
 * A failure that passes by itself: a timeout, nobody answering, or JetStream
 * without a leader for the asset (nats.js v3 reports that as "jetstream is
 * not enabled", DESIGN.md traps). Worth retrying; anything else is not.
 */
export function isTransientNatsFailure(error: unknown): boolean {
  const failure = natsFailureOf(error);
  if (failure === 'timeout' || failure === 'no-responders') return true;
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (/jetstream is not enabled|no responders|timeout/i.test(e.message)) return true;
  }
  return false;
}
