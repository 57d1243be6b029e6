import { ProtocolError, pyRepr, QubesLabelInUseError } from '../../model/errors.js';
import type { Label } from '../../model/labels.js';
import { MAX_DEFAULT_LABEL, validateLabelName } from '../../model/labels.js';
import type { CallContext } from '../call-context.js';

/** The argument checked as a label name, then looked up as upstream's get_label does. */
function labelOf(ctx: CallContext): Label {
  validateLabelName(ctx.arg, false);
  return ctx.app.labels.lookup(ctx.arg);
}

export const label = {
  list: (ctx: CallContext): string =>
    ctx.app.labels
      .list()
      .map((l) => `${l.name}\n`)
      .join(''),
  get: (ctx: CallContext): string => labelOf(ctx).color,
  index: (ctx: CallContext): string => String(labelOf(ctx).index),
  create: (ctx: CallContext): undefined => {
    ctx.app.labels.create(ctx.arg, ctx.payload);
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    const l = labelOf(ctx);
    if (l.index <= MAX_DEFAULT_LABEL) throw new ProtocolError('Can only remove custom labels');
    // A qube whose label was reset has none (upstream's check fails on it, depending on the order).
    if (ctx.app.domains.list().some((vm) => vm.label === l))
      // Upstream names the Label object here, as its repr (the colour is bytes there until a reload).
      throw new QubesLabelInUseError(
        `Label is still in use: Label(${l.index}, ${pyRepr(l.color)}, ${pyRepr(l.name)})`,
      );
    ctx.app.labels.remove(l);
    return undefined;
  },
};
