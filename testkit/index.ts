// The process launchers live in launch/ (make up starts the system with them); the kit re-exports them.
export * from '../launch/index.js';
export { eventually } from './eventually.js';
export { BidLoad, openAuctions, replayShard, type AckedBid } from './bid-load.js';
export { TcpProxy } from './tcp-proxy.js';
export { NatsProxy, type ProxiedMessage } from './nats-proxy.js';
export { WsClient, type WsMessage } from './ws-client.js';
export { rawHttp, httpRequest, type RawResponse } from './raw-http.js';
export { LauncherProcess, type LauncherChild, type LauncherProcessOptions } from './launcher-process.js';
