import { QubesError, type AdminClient } from '@odyssey/client';

import type { Guests } from './guests.js';

export const CATEGORIES = ['api', 'lifecycle', 'qrexec', 'management', 'vchan', 'dispvm', 'guest'] as const;
export type Category = (typeof CATEGORIES)[number];

export type Status = 'pass' | 'fail' | 'unsupported';

export interface CheckResult {
  id: string;
  category: Category;
  status: Status;
  reason: string;
}

/** What every check gets: the daemon's socket, a client on it, a way into guests, and the metrics to fill. */
export interface CheckContext {
  readonly backend: string;
  readonly socket: string;
  readonly client: AdminClient;
  /** Undefined when the suite knows no way to run programs inside this backend's domains. */
  readonly guests: Guests | undefined;
  readonly metrics: Record<string, number>;
  /** virt_mode for the suite's template qube, which its other qubes inherit; unset: the daemon's default. */
  readonly virtMode?: string;
}

export interface Check {
  readonly id: string;
  readonly category: Category;
  run(ctx: CheckContext): Promise<void>;
}

/** Thrown by a check that cannot run on this backend; its message is the report's reason. */
export class Unsupported extends Error {}

/**
 * Errors of the daemon that mean "this backend cannot": QubesNotImplementedError (a call the backend's
 * capabilities rule out), or a refusal worded so.
 */
export function unsupportedFrom(err: unknown): Unsupported | undefined {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof QubesError && err.type === 'QubesNotImplementedError') return new Unsupported(message);
  return /not supported|unsupported/i.test(message) ? new Unsupported(message) : undefined;
}

export function fail(message: string): never {
  throw new Error(message);
}

export function expectEqual<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

/** Long enough for a TCG guest to boot; a hung call must not hang the whole suite. */
const CHECK_TIMEOUT_MS = 180_000;

function withTimeout(work: Promise<void>, ms: number, id: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${id} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Runs the checks one after another (later ones build on the qubes earlier ones made). */
export async function runChecks(
  checks: readonly Check[],
  ctx: CheckContext,
  onResult: (result: CheckResult) => void,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    let result: CheckResult;
    try {
      await withTimeout(check.run(ctx), CHECK_TIMEOUT_MS, check.id);
      result = { id: check.id, category: check.category, status: 'pass', reason: '' };
    } catch (err) {
      const unsupported = err instanceof Unsupported ? err : unsupportedFrom(err);
      const reason = unsupported?.message ?? (err instanceof Error ? err.message : String(err));
      const status = unsupported ? 'unsupported' : 'fail';
      result = { id: check.id, category: check.category, status, reason };
    }
    results.push(result);
    onResult(result);
  }
  return results;
}
