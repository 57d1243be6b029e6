export * from './capabilities.js';
export * from './domain-spec.js';
export * from './errors.js';
export * from './vchan.js';
export * from './peer-gone.js';
export * from './vmm.js';
export * from './event-hub.js';
export * from './loader.js';
