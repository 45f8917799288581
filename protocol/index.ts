export * from './names.js';
export * from './ids.js';
export * from './money.js';
export * from './reasons.js';
export * from './commands.js';
export * from './wire.js';
export { EngineClient } from './engine-client.js';
export * from './notifications.js';
