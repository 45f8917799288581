export * from './ids.js';
export * from './money.js';
export * from './reasons.js';
export * from './commands.js';
