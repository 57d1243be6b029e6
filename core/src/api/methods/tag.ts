import { PermissionDenied } from '../../model/errors.js';
import { validateTag } from '../../model/tags.js';
import type { CallContext } from '../call-context.js';

/**
 * created-by-* and disp-created-by-* tags record who created a VM, and policy
 * grants on them; only dom0 may change them (upstream's AdminExtension guards
 * created-by-*; the disp- form is given the same guard with the same refusal).
 */
const CREATOR_TAG = /^(disp-)?created-by-/;

function checkAllowed(ctx: CallContext): void {
  if (CREATOR_TAG.test(ctx.arg) && !ctx.src.isAdminVm) {
    throw new PermissionDenied('changing this tag is prohibited by qubes.ext.admin.AdminExtension');
  }
}

export const tag = {
  list: (ctx: CallContext): string =>
    ctx.dest.tags
      .list()
      .map((t) => `${t}\n`)
      .join(''),
  get: (ctx: CallContext): string => {
    validateTag(ctx.arg);
    return ctx.dest.tags.has(ctx.arg) ? '1' : '0';
  },
  set: (ctx: CallContext): undefined => {
    validateTag(ctx.arg);
    checkAllowed(ctx);
    ctx.dest.tags.add(ctx.arg);
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    validateTag(ctx.arg);
    checkAllowed(ctx);
    ctx.dest.tags.remove(ctx.arg);
    return undefined;
  },
};
