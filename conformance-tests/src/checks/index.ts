import type { Category, Check } from '../check.js';
import { apiByteChecks } from './api-bytes.js';
import { apiFlowChecks } from './api-flows.js';
import { dispvmChecks } from './dispvm.js';
import { halLifecycleChecks, halStartCheck } from './hal.js';
import type { HalContext } from './hal-context.js';
import { halVchanChecks } from './hal-vchan.js';
import { guestConsoleChecks } from './guest-console.js';
import { guestTemplateChecks } from './guest-template.js';
import { isolationChecks } from './isolation.js';
import { lifecycleChecks } from './lifecycle.js';
import { managementChecks } from './management.js';
import { networkChecks } from './network.js';
import { qrexecChecks } from './qrexec.js';
import { qubesdbChecks } from './qubesdb.js';
import { qvmRunChecks } from './qvm-run.js';
import { vchanChecks } from './vchan.js';

/**
 * The checks run against the daemon, in run order: later categories use the qubes lifecycle
 * creates and starts. A new check module adds its array here (and its category to CATEGORIES).
 */
export const DAEMON_CHECKS: readonly Check[] = [
  ...apiByteChecks,
  ...apiFlowChecks,
  ...lifecycleChecks,
  ...qrexecChecks,
  ...managementChecks,
  ...vchanChecks,
  ...qubesdbChecks,
  ...dispvmChecks,
  ...qvmRunChecks,
  ...guestConsoleChecks,
  ...guestTemplateChecks,
  ...networkChecks,
  // Last: its fork bomb loads the whole host, and ends with conf-isolated killed.
  ...isolationChecks,
];

/**
 * The checks run against the suite's own instance of the backend, before the daemon starts: the
 * vchan checks use the domain hal.start started, the lifecycle checks then stop it.
 */
export const HAL_CHECKS: readonly Check<HalContext>[] = [
  halStartCheck,
  ...halVchanChecks,
  ...halLifecycleChecks,
];

export interface Selection {
  readonly hal: readonly Check<HalContext>[];
  readonly daemon: readonly Check[];
}

/**
 * The checks of `only` (all without it), plus the lifecycle checks that create and start the qubes
 * the guest categories need (a `--only vchan` run still needs running guests). Whether a check can
 * run on this backend is not decided here but by its declaration (Check.needs, the guest kinds).
 */
export function selectChecks(only: readonly Category[] | undefined): Selection {
  if (!only) return { hal: [...HAL_CHECKS], daemon: [...DAEMON_CHECKS] };
  // The network category boots its own qubes of the Debian template, not lifecycle's.
  const needsGuests = only.some((c) => c !== 'api' && c !== 'lifecycle' && c !== 'hal' && c !== 'network');
  const setup = new Set(['lifecycle.create-qubes', 'lifecycle.start-guests']);
  return {
    hal: only.includes('hal') ? [...HAL_CHECKS] : [],
    daemon: DAEMON_CHECKS.filter((c) => only.includes(c.category) || (needsGuests && setup.has(c.id))),
  };
}
