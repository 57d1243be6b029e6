import { ProtocolError } from '../../model/errors.js';
import { splitInterfaces } from '../../model/denied-interfaces.js';
import { isAscii } from '../../model/validate.js';
import type { CallContext } from '../call-context.js';

/**
 * admin.vm.device.denied.*: the devices_denied property as a list of
 * 7-character interface codes. The payload is only split here; which codes
 * are valid is the property setter's business, as upstream has it.
 */
function current(ctx: CallContext): string {
  return String(ctx.dest.props.get('devices_denied') ?? '');
}

function payloadInterfaces(ctx: CallContext, allowAll: boolean): string[] | 'all' {
  if (!isAscii(ctx.payload)) throw new ProtocolError('Device interface contains non-ASCII characters');
  const text = ctx.payload.toString('ascii');
  if (allowAll && text === 'all') return 'all';
  return splitInterfaces(text);
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
    const added = payloadInterfaces(ctx, false) as string[];
    requireUnique(added);
    ctx.dest.props.set('devices_denied', current(ctx) + added.join(''));
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    const denied = splitInterfaces(current(ctx));
    const requested = payloadInterfaces(ctx, true);
    const removed = requested === 'all' ? denied : requested;
    requireUnique(removed);
    const kept = denied.filter((c) => !removed.includes(c)).join('');
    if (kept !== current(ctx)) ctx.dest.props.set('devices_denied', kept);
    return undefined;
  },
};
