export { ManagedProcess, handleSignals, ownProcessGroups, type ProcessExit, type Signal } from './managed-process.js';
export {
  NatsServer,
  NatsCluster,
  startNats,
  startNatsCluster,
  natsServerBinary,
  type NatsServerOptions,
} from './nats-server.js';
export { EngineProcess, type EngineProcessOptions } from './engine-process.js';
export { AuditProcess, type AuditProcessOptions } from './audit-process.js';
export { GatewayProcess, type GatewayProcessOptions } from './gateway-process.js';
export { freePort } from './ports.js';
