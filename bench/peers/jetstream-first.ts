import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { Packr } from 'msgpackr';
import type { PeerAuctions, PeerBid, PeerDesign, PeerOutcome } from './design.js';
import { decideProxyBid, type PeerAuctionState } from './proxy-rule.js';

/**
 * The "log first" (Kafka-first) design: the front door appends every bid to
 * a stream with one JetStream publish and waits for its PubAck (the bid is
 * durable), then a decider reading the stream in order (an ordered
 * consumer, in a process of its own) applies the proxy rule in memory and
 * publishes each outcome to the door that took the bid, which answers the
 * client. What this design pays per bid: a publish and an ack, a delivery
 * to the decider, an outcome message back. Outcomes are not logged: they
 * follow from the stream (a new decider replays it from the start).
 */
export const PEER_STREAM = 'PEER_BIDS';
const BIDS_SUBJECT = 'peer.bids';
const outcomesSubject = (door: string) => `peer.outcomes.${door}`;

/** Bids and outcomes on the wire: msgpack arrays, positional. */
const packr = new Packr({ useRecords: false });
type BidMessage = [auctionId: number, bidderId: number, bidId: number, maxBid: number, at: number, door: string];
type OutcomeMessage = [
  bidderId: number,
  bidId: number,
  accepted: 0 | 1,
  reason: string,
  price: number,
  leading: 0 | 1,
  endsAt: number,
  seq: number,
];

/** Creates (again, empty) the stream of bids; file storage, as the engine's shard logs. */
export async function createPeerStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(PEER_STREAM).catch(() => undefined);
  await jsm.streams.add({ name: PEER_STREAM, subjects: [BIDS_SUBJECT] });
}

export class JetStreamFirstDesign implements PeerDesign {
  readonly description =
    'one JetStream publish + PubAck per bid, decided afterwards by an ordered consumer in another process, outcome sent back over core NATS';
  private readonly js: JetStreamClient;
  /** Bids appended and not yet decided, by "bidder:bidId" (a retry in flight waits with the first). */
  private readonly waiting = new Map<string, ((outcome: PeerOutcome) => void)[]>();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly door: string,
  ) {
    this.js = jetstream(nc);
    nc.subscribe(outcomesSubject(door), {
      callback: (error, m) => {
        if (error) return;
        const [bidderId, bidId, accepted, reason, price, leading, endsAt, seq] = packr.unpack(m.data) as OutcomeMessage;
        const key = `${bidderId}:${bidId}`;
        const resolvers = this.waiting.get(key);
        if (!resolvers) return;
        this.waiting.delete(key);
        const outcome: PeerOutcome = {
          status: accepted ? 'accepted' : 'rejected',
          ...(reason ? { reason: reason as PeerOutcome['reason'] } : {}),
          price,
          leading: leading === 1,
          endsAt,
          seq,
        };
        for (const resolve of resolvers) resolve(outcome);
      },
    });
  }

  static async open(nc: NatsConnection, door: string): Promise<JetStreamFirstDesign> {
    const design = new JetStreamFirstDesign(nc, door);
    await nc.flush(); // the outcome subscription is in place before the first bid
    return design;
  }

  async decide(bid: PeerBid): Promise<PeerOutcome> {
    const key = `${bid.bidderId}:${bid.bidId}`;
    const decided = new Promise<PeerOutcome>((resolve) => {
      const resolvers = this.waiting.get(key);
      if (resolvers) resolvers.push(resolve);
      else this.waiting.set(key, [resolve]);
    });
    const message: BidMessage = [bid.auctionId, bid.bidderId, bid.bidId, bid.maxBid, bid.at, this.door];
    try {
      await this.js.publish(BIDS_SUBJECT, packr.pack(message));
    } catch (error) {
      this.waiting.delete(key);
      throw error;
    }
    return decided;
  }

  async close(): Promise<void> {
    await this.nc.drain();
  }
}

/**
 * The decider: reads the stream from its start in order, decides each bid
 * against the auctions in memory (a retried bid gets its first outcome
 * back, from a bounded memory of recent outcomes), and sends the outcome to
 * the bid's door. Runs until the connection closes.
 */
export async function runDecider(nc: NatsConnection, auctions: PeerAuctions, remembered = 1_000_000): Promise<void> {
  const states: PeerAuctionState[] = [];
  for (let id = 1; id <= auctions.count; id++)
    states[id] = { price: auctions.startingPrice, leaderId: 0, leaderMax: 0, endsAt: auctions.endsAt, bidCount: 0 };
  const outcomes = new Map<string, OutcomeMessage>();
  const consumer = await jetstream(nc).consumers.get(PEER_STREAM);
  const messages = await consumer.consume();
  for await (const m of messages) {
    const [auctionId, bidderId, bidId, maxBid, at, door] = packr.unpack(m.data) as BidMessage;
    const key = `${bidderId}:${bidId}`;
    let outcome = outcomes.get(key);
    if (!outcome) {
      const state = states[auctionId];
      if (!state) outcome = [bidderId, bidId, 0, 'auction_not_found', 0, 0, 0, 0];
      else {
        const d = decideProxyBid(state, bidderId, maxBid, at, auctions.softCloseMs);
        states[auctionId] = d.state;
        outcome = [
          bidderId,
          bidId,
          d.status === 'accepted' ? 1 : 0,
          d.reason ?? '',
          d.price,
          d.leading ? 1 : 0,
          d.endsAt,
          m.seq,
        ];
      }
      // Oldest first out: a Map iterates in insertion order.
      if (outcomes.size >= remembered) outcomes.delete(outcomes.keys().next().value!);
      outcomes.set(key, outcome);
    }
    nc.publish(outcomesSubject(door), packr.pack(outcome));
  }
}
