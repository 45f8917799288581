export { NatsServer, NatsCluster, startNats, startNatsCluster, natsServerBinary, type NatsServerOptions } from './nats-server.js';
export { freePort } from './ports.js';
export { eventually } from './eventually.js';
export { EngineProcess, type EngineProcessOptions } from './engine-process.js';
export { ManagedProcess, handleSignals, type Signal } from './managed-process.js';
export { BidLoad, replayShard, type AckedBid } from './bid-load.js';
export { TcpProxy } from './tcp-proxy.js';
export { AuditProcess } from './audit-process.js';
