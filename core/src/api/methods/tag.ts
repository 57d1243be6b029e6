import { PermissionDenied } from '../../model/errors.js';
import { validateTag } from '../../model/tags.js';
import type { CallContext } from '../call-context.js';

/** created-by-* tags record who created a VM; only dom0 may change them (upstream's AdminExtension). */
function checkAllowed(ctx: CallContext): void {
  if (ctx.arg.startsWith('created-by-') && !ctx.src.isAdminVm) {
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
