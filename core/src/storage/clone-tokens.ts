import { randomBytes, timingSafeEqual } from 'node:crypto';

import { QubesVolumeCopyTokenNotFoundError } from '../model/errors.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Bytes at or above this would make some characters likelier than others. */
const UNBIASED_LIMIT = 256 - (256 % ALPHABET.length);
export const TOKEN_LENGTH = 32;
export const DEFAULT_CLONE_TOKEN_TTL_MS = 10 * 60 * 1000;

/** 32 characters of [A-Za-z0-9] from the CSPRNG, like upstream's random_string(32): ~190 bits. */
export function randomToken(length = TOKEN_LENGTH): string {
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < UNBIASED_LIMIT) out += ALPHABET[b % ALPHABET.length];
      if (out.length === length) break;
    }
  }
  return out;
}

interface Entry<T> {
  readonly token: Buffer;
  readonly value: T;
  readonly expires: number;
}

export interface CloneTokensOptions {
  ttlMs?: number;
  now?: () => number;
}

/**
 * Pending `admin.vm.volume.CloneFrom` grants: single use, expiring, held
 * only in memory (a daemon restart revokes them all, as upstream).
 */
export class CloneTokens<T> {
  private entries: Entry<T>[] = [];
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(opts: CloneTokensOptions = {}) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_CLONE_TOKEN_TTL_MS;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    this.expire();
    return this.entries.length;
  }

  issue(value: T): string {
    this.expire();
    let token: string;
    do token = randomToken();
    while (this.find(Buffer.from(token, 'latin1')) >= 0);
    this.entries.push({ token: Buffer.from(token, 'latin1'), value, expires: this.now() + this.ttlMs });
    return token;
  }

  /**
   * Removes the token and returns what it grants. The token is gone even if
   * the caller's copy then fails, so a leaked token is worth one attempt.
   */
  consume(token: string): T {
    this.expire();
    const i = this.find(Buffer.from(token, 'latin1'));
    const entry = i >= 0 ? this.entries[i] : undefined;
    if (entry === undefined) throw new QubesVolumeCopyTokenNotFoundError();
    this.entries.splice(i, 1);
    return entry.value;
  }

  /** Drops every token granting something that matches (e.g. volumes of a removed VM). */
  revokeWhere(pred: (value: T) => boolean): void {
    this.entries = this.entries.filter((e) => !pred(e.value));
  }

  /** Compares against every entry without an early exit, so timing tells nothing about near misses. */
  private find(candidate: Buffer): number {
    const probe = Buffer.alloc(TOKEN_LENGTH);
    candidate.copy(probe, 0, 0, TOKEN_LENGTH);
    const lengthOk = candidate.length === TOKEN_LENGTH;
    let found = -1;
    this.entries.forEach((e, i) => {
      if (timingSafeEqual(e.token, probe) && lengthOk) found = i;
    });
    return found;
  }

  private expire(): void {
    const now = this.now();
    this.entries = this.entries.filter((e) => e.expires > now);
  }
}
