import type { NatsConnection } from '@nats-io/transport-node';
import type { BusPort } from './ports.js';

/** Request subjects on a NATS connection: a core subscription per subject, the Msg handed over as it is. */
export function natsBus(nc: NatsConnection): BusPort {
  return {
    serve(subject, handler) {
      return nc.subscribe(subject, { callback: (_error, msg) => handler(msg) });
    },
    flush: () => nc.flush(),
  };
}
