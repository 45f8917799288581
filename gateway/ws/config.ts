import type { GatewayConfig } from '../config.js';

/** Auctions one `subscribe` or `unsubscribe` names at most. */
export const SUBSCRIBE_IDS_MAX = 100;
/** A request id is a number, or a string of at most this many characters. */
export const RID_CHARS_MAX = 64;

/**
 * uWS's limits for `/v1/ws`: a frame over `frameBytesMax` closes the
 * connection; past `backpressureBytesMax` buffered, broadcasts to a socket
 * are dropped (not buffered, and the socket is not closed: the latest
 * states are resent when it drains); dead peers are closed by the idle
 * timeout, pings being automatic.
 */
export function socketLimits(c: GatewayConfig) {
  return {
    maxPayloadLength: c.frameBytesMax,
    maxBackpressure: c.backpressureBytesMax,
    closeOnBackpressureLimit: 0,
    idleTimeout: c.idleTimeoutSeconds,
    sendPingsAutomatically: true,
  };
}
