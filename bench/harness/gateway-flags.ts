import { GatewayProcess, type NatsServer } from '../../testkit/index.js';

/**
 * Gateway flags for load runs. The bench drives every connection from one
 * address (loopback) and many from a few users, so the per-user, per-address
 * and per-connection limits that protect a public gateway would throttle the
 * load generator itself instead of measuring the system. The caps in all
 * (`--ws-max`, `--sse-max`) and every other bound stay as they are.
 */
export const LOAD_GATEWAY_FLAGS: readonly string[] = [
  '--user-commands-per-sec',
  '1000000',
  '--connection-messages-per-sec',
  '1000000',
  '--address-reads-per-sec',
  '1000000',
  '--ws-per-address-max',
  '100000',
  '--ws-per-user-max',
  '100000',
  '--sse-per-address-max',
  '20000',
];

/** A gateway for a load run: the cluster's NATS as the gateway's user, tokens signed with `secret`, the flags above. */
export function startLoadGateway(nats: NatsServer, secret: string): Promise<GatewayProcess> {
  return GatewayProcess.start({
    natsUrl: nats.url,
    secret,
    env: nats.credentials('gateway'),
    args: [...LOAD_GATEWAY_FLAGS],
  });
}
