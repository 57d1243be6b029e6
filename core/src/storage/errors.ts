/**
 * Upstream raises these as plain KeyError subclasses, not QubesException, so
 * the daemon answers them with an empty response; they are kept apart from
 * model/errors.ts's wire exceptions for that reason.
 */
export class QubesVolumeRevisionNotFoundError extends Error {
  constructor(revision: string) {
    super(`Revision not found: ${revision}`);
    this.name = 'QubesVolumeRevisionNotFoundError';
  }
}

export class QubesPoolNotFoundError extends Error {
  constructor(pool: string) {
    super(`Pool does not exist: ${pool}`);
    this.name = 'QubesPoolNotFoundError';
  }
}

export class QubesVolumeNotFoundError extends Error {
  constructor(vid: string) {
    super(`Volume does not exist: ${vid}`);
    this.name = 'QubesVolumeNotFoundError';
  }
}
