export * from './config.js';
export * from './duration.js';
export * from './runner.js';
export * from './scheduler.js';
export * from './state.js';
