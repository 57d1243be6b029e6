import { ProtocolError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

/** admin.vm.device.denied.*: the devices_denied property as a list of 7-character interface codes. */
const CODE = /^[bump*][0-9a-f*]{6}$/;

function codesOf(ctx: CallContext): string[] {
  return (String(ctx.dest.props.get('devices_denied')).match(/.{7}/g) ?? []) as string[];
}

function parseCodes(payload: Buffer): string[] {
  const s = payload.toString('latin1');
  if (s.length % 7 !== 0) throw new ProtocolError('Invalid length of denied interfaces');
  const codes = s.match(/.{7}/g) ?? [];
  for (const c of codes) if (!CODE.test(c)) throw new ProtocolError(`Invalid device interface: ${c}`);
  return codes;
}

function store(ctx: CallContext, codes: string[]): void {
  ctx.dest.props.set('devices_denied', [...new Set(codes)].sort().join(''));
}

export const devicesDenied = {
  /** Joined by newlines with no trailing one, unlike every other list. */
  list: (ctx: CallContext): string => codesOf(ctx).join('\n'),
  add: (ctx: CallContext): undefined => {
    const added = parseCodes(ctx.payload);
    if (new Set(added).size !== added.length) throw new ProtocolError('Duplicated interfaces in payload');
    const current = codesOf(ctx);
    if (added.some((c) => !current.includes(c))) store(ctx, [...current, ...added]);
    return undefined;
  },
  remove: (ctx: CallContext): undefined => {
    const current = codesOf(ctx);
    if (ctx.payload.toString('latin1') === 'all') {
      if (current.length > 0) store(ctx, []);
      return undefined;
    }
    const removed = new Set(parseCodes(ctx.payload));
    const kept = current.filter((c) => !removed.has(c));
    if (kept.length !== current.length) store(ctx, kept);
    return undefined;
  },
};
