import { ProtocolError, QubesLabelInUseError } from '../../model/errors.js';
import { MAX_DEFAULT_LABEL } from '../../model/labels.js';
import type { CallContext } from '../call-context.js';

export const label = {
  list: (ctx: CallContext): string =>
    ctx.app.labels
      .list()
      .map((l) => `${l.name}\n`)
      .join(''),
  get: (ctx: CallContext): string => ctx.app.labels.get(ctx.arg).color,
  index: (ctx: CallContext): string => String(ctx.app.labels.get(ctx.arg).index),
  create: (ctx: CallContext): undefined => {
    ctx.app.labels.create(ctx.arg, ctx.payload);
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    const l = ctx.app.labels.get(ctx.arg);
    if (l.index <= MAX_DEFAULT_LABEL) throw new ProtocolError('Can only remove custom labels');
    if (ctx.app.domains.list().some((vm) => vm.label === l)) throw QubesLabelInUseError.forLabel(l.name);
    ctx.app.labels.remove(l);
    return undefined;
  },
};
