/**
 * uWS topics, one per auction and one per user, each in two formats: `t`
 * (JSON text) and `b` (msgpack binary). A message is published once per
 * topic, already encoded, so a socket subscribes in the format it speaks.
 */
export type Format = 't' | 'b';

/** An auction's states: `a/<auctionId>/<format>`. */
export const auctionTopic = (auctionId: number, format: Format) => `a/${auctionId}/${format}`;

/** A user's live notifications: `u/<userId>/<format>`. */
export const userTopic = (userId: number, format: Format) => `u/${userId}/${format}`;

export const otherFormat = (format: Format): Format => (format === 'b' ? 't' : 'b');
