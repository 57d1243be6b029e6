import type { Category, Check } from '../check.js';
import { apiByteChecks } from './api-bytes.js';
import { apiFlowChecks } from './api-flows.js';
import { dispvmChecks } from './dispvm.js';
import { guestTemplateChecks } from './guest-template.js';
import { lifecycleChecks } from './lifecycle.js';
import { managementChecks } from './management.js';
import { qrexecChecks } from './qrexec.js';
import { vchanChecks } from './vchan.js';

/** Every check in run order: later categories use the qubes lifecycle creates and starts. */
export const ALL_CHECKS: readonly Check[] = [
  ...apiByteChecks,
  ...apiFlowChecks,
  ...lifecycleChecks,
  ...qrexecChecks,
  ...managementChecks,
  ...vchanChecks,
  ...dispvmChecks,
  ...guestTemplateChecks,
];

/**
 * The checks of `only`, plus the lifecycle checks that create and start the qubes the guest
 * categories need (a `--only vchan` run still needs running guests).
 */
export function selectChecks(only: readonly Category[] | undefined): Check[] {
  if (!only) return [...ALL_CHECKS];
  const needsGuests = only.some((c) => c !== 'api' && c !== 'lifecycle');
  const setup = new Set(['lifecycle.create-qubes', 'lifecycle.start-guests']);
  return ALL_CHECKS.filter((c) => only.includes(c.category) || (needsGuests && setup.has(c.id)));
}
