import { PermissionDenied } from '../../model/errors.js';
import { validateFeature } from '../../model/features.js';
import { checkCustomPersist } from '../../model/custom-persist.js';
import { checkPreloadFeature } from '../../model/preload-features.js';
import { checkServiceFeature } from '../../model/service-features.js';
import { checkVmConfigFeature } from '../../model/vm-config-feature.js';
import type { Vm } from '../../model/vm.js';
import type { CallContext } from '../call-context.js';
import { QubesFeatureNotFoundError } from '../../model/errors.js';

/** Features only the daemon itself may change (upstream's AdminExtension list). */
const PROHIBITED = new Set([
  'deferred-netvm-original',
  'preload-dispvm',
  'preload-dispvm-completed',
  'preload-dispvm-in-progress',
]);

function checkAllowed(name: string): void {
  if (PROHIBITED.has(name))
    throw new PermissionDenied('changing this feature is prohibited by qubes.ext.admin.AdminExtension');
}

function lookup(ctx: CallContext, find: (vm: Vm, name: string) => string | undefined): string {
  const value = find(ctx.dest, ctx.arg);
  if (value === undefined) throw QubesFeatureNotFoundError.forVm(ctx.dest.name, ctx.arg);
  return value;
}

export const feature = {
  list: (ctx: CallContext): string =>
    ctx.dest.features
      .names()
      .map((n) => `${n}\n`)
      .join(''),
  get: (ctx: CallContext): string => ctx.dest.features.require(ctx.arg),
  checkWithTemplate: (ctx: CallContext): string => lookup(ctx, (vm, n) => vm.featureWithTemplate(n)),
  checkWithNetvm: (ctx: CallContext): string => lookup(ctx, (vm, n) => vm.featureWithNetvm(n)),
  checkWithAdminVm: (ctx: CallContext): string => lookup(ctx, (vm, n) => vm.featureWithAdminVm(n)),
  checkWithTemplateAndAdminVm: (ctx: CallContext): string =>
    lookup(ctx, (vm, n) => vm.featureWithTemplateAndAdminVm(n)),
  set: (ctx: CallContext): undefined => {
    const value = validateFeature(ctx.arg, ctx.payload);
    checkAllowed(ctx.arg);
    checkServiceFeature(ctx.arg);
    checkPreloadFeature(ctx.dest, ctx.arg, value);
    // Upstream refuses it once set (the value stays, and the qube's next start fails); here before.
    checkCustomPersist(ctx.arg, value);
    checkVmConfigFeature(ctx.dest, ctx.arg);
    ctx.dest.features.set(ctx.arg, value);
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    checkAllowed(ctx.arg);
    ctx.dest.features.remove(ctx.arg);
    return undefined;
  },
};
