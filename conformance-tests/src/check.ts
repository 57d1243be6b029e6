import type { AdminClient } from '@odyssey/client';
import type { CapabilityName, VmmCapabilities } from '@odyssey/hal';

import type { BackendUnderTest } from './backend-under-test.js';
import type { Guests } from './guests.js';

export const CATEGORIES = [
  'api',
  'hal',
  'lifecycle',
  'qrexec',
  'management',
  'vchan',
  'dispvm',
  'guest',
  'network',
  'isolation',
] as const;
export type Category = (typeof CATEGORIES)[number];

/**
 * Categories whose checks never reach the backend (the daemon answers them from its own model):
 * the report keeps them in a "core" section apart from what the backend itself earned. Every
 * other category, a new one included, is in the "backend" section.
 */
export const CORE_CATEGORIES: readonly Category[] = ['api'];
export type Section = 'core' | 'backend';
export const sectionOf = (category: Category): Section =>
  CORE_CATEGORIES.includes(category) ? 'core' : 'backend';

/**
 * `warn`: nothing the backend promised failed, but it said something untrue of itself: it
 * declared unsupported what works, or reported a guest's crash as a clean shutdown.
 */
export type Status = 'pass' | 'fail' | 'unsupported' | 'warn';

export interface CheckResult {
  id: string;
  category: Category;
  section: Section;
  status: Status;
  reason: string;
  /** Wall time the check took: what a category costs in CI, and where a slow backend spends it. */
  durationMs: number;
}

/** What every daemon-level check gets: the daemon's socket, a client on it, a way into guests, and the metrics to fill. */
export interface CheckContext {
  /** The suite's own instance of the backend (its declaration; a view of domains from outside the daemon). */
  readonly backend: BackendUnderTest;
  readonly socket: string;
  readonly client: AdminClient;
  /** How the suite runs programs inside this backend's domains, or why it cannot. */
  readonly guests: Guests | Unsupported;
  readonly metrics: Record<string, number>;
  /** virt_mode for the suite's template qube, which its other qubes inherit; unset: the daemon's default. */
  readonly virtMode?: string;
}

/** A check: `C` is what it runs against (the daemon's CheckContext, or hal's in-process backend). */
export interface Check<C = CheckContext> {
  readonly id: string;
  readonly category: Category;
  /** Capabilities the check exercises: one declared unsupported and the check is not attempted. */
  readonly needs?: readonly CapabilityName[];
  /** Longer than the suite's default limit, for a check whose work is a whole boot (a qube's start). */
  readonly timeoutMs?: number;
  run(ctx: C): Promise<void>;
}

/**
 * Thrown by a check that cannot run. `declared`: the backend said so (its capabilities, or what
 * createBackend returned); `suite`: the suite has no way to run it here. The report's reason
 * starts with which one it is.
 */
export class Unsupported extends Error {
  constructor(
    readonly by: 'declared' | 'suite',
    readonly why: string,
  ) {
    super(`${by === 'declared' ? 'declared' : 'not run here'}: ${why}`);
  }
}

/** Thrown by a check whose outcome is a warning (see Status). */
export class Warning extends Error {}

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

/** The first capability `check` needs that the backend declares unsupported. */
function declaredUnsupported(check: Check<never>, caps: VmmCapabilities): Unsupported | undefined {
  for (const name of check.needs ?? []) {
    const capability = caps[name];
    if (capability?.supported !== true)
      return new Unsupported('declared', `${name}: ${capability?.reason ?? 'not declared'}`);
  }
  return undefined;
}

/** Runs one check into its result: an error is a failure unless it is an Unsupported or a Warning. */
export async function runCheck<C>(check: Check<C>, ctx: C, caps: VmmCapabilities): Promise<CheckResult> {
  const started = performance.now();
  const outcome = await checkOutcome(check, ctx, caps);
  return {
    id: check.id,
    category: check.category,
    section: sectionOf(check.category),
    ...outcome,
    durationMs: Math.round(performance.now() - started),
  };
}

async function checkOutcome<C>(
  check: Check<C>,
  ctx: C,
  caps: VmmCapabilities,
): Promise<Pick<CheckResult, 'status' | 'reason'>> {
  const declared = declaredUnsupported(check as Check<never>, caps);
  if (declared) return { status: 'unsupported', reason: declared.message };
  try {
    await withTimeout(check.run(ctx), check.timeoutMs ?? CHECK_TIMEOUT_MS, check.id);
    return { status: 'pass', reason: '' };
  } catch (err) {
    if (err instanceof Unsupported) return { status: 'unsupported', reason: err.message };
    if (err instanceof Warning) return { status: 'warn', reason: err.message };
    return { status: 'fail', reason: err instanceof Error ? err.message : String(err) };
  }
}

/** Runs the checks one after another (later ones build on what earlier ones made). */
export async function runChecks<C>(
  checks: readonly Check<C>[],
  ctx: C,
  caps: VmmCapabilities,
  onResult: (result: CheckResult) => void,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks) {
    const result = await runCheck(check, ctx, caps);
    results.push(result);
    onResult(result);
  }
  return results;
}
