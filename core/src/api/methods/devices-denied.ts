import { ProtocolError } from '../../model/errors.js';
import { splitInterfaces } from '../../model/denied-interfaces.js';
import { isAscii } from '../../model/validate.js';
import { P } from '../../model/vm-properties.js';
import type { CallContext } from '../call-context.js';

/**
 * admin.vm.device.denied.*: the devices_denied property as a list of
 * 7-character interface codes. The payload is only split here; which codes
 * are valid is the property setter's business, as upstream has it.
 */
function current(ctx: CallContext): string {
  return ctx.dest.props.get(P.devices_denied);
}

function payloadText(ctx: CallContext): string {
  if (!isAscii(ctx.payload)) throw new ProtocolError('Device interface contains non-ASCII characters');
  return ctx.payload.toString('ascii');
}

function requireUnique(codes: readonly string[]): void {
  if (new Set(codes).size !== codes.length)
    throw new ProtocolError('Duplicated device interfaces in payload.');
}

export const devicesDenied = {
  /** Joined by newlines with no trailing one, unlike every other list. */
  list: (ctx: CallContext): string => splitInterfaces(current(ctx)).join('\n'),
  /** Always sets (the setter drops duplicates), so events fire even when nothing changes. */
  add: (ctx: CallContext): undefined => {
    const added = splitInterfaces(payloadText(ctx));
    requireUnique(added);
    ctx.dest.props.set('devices_denied', current(ctx) + added.join(''));
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    const denied = splitInterfaces(current(ctx));
    const text = payloadText(ctx);
    const removed = text === 'all' ? denied : splitInterfaces(text);
    requireUnique(removed);
    const kept = denied.filter((c) => !removed.includes(c)).join('');
    if (kept !== current(ctx)) ctx.dest.props.set('devices_denied', kept);
    return undefined;
  },
};
