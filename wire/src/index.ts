export * from './exceptions.js';
export * from './reply.js';
export * from './request.js';
