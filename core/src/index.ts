export * from './hal/index.js';
