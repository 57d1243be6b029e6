export * from './hal/index.js';
export * from './qrexec/index.js';
