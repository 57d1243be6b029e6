import { PermissionDenied } from '../model/errors.js';
import type { Vm } from '../model/vm.js';
import type { CallContext } from './call-context.js';

/**
 * Refuses a reference (netvm, template, default_dispvm, a device backend...)
 * to a qube the caller may not refer to; only odysseyd's strict-management
 * setting makes any qube unreferable (AccessControl.mayReference).
 */
export function requireReferable(ctx: CallContext, target: Vm | null, what: string): void {
  if (target && !ctx.services.access.mayReference(ctx, target))
    throw new PermissionDenied(`strict-management: ${what} may only name qubes the caller can list`);
}
