import { ProtocolError } from '../../model/errors.js';
import { formatApiRule, isExpired, parseApiRule } from '../../model/firewall.js';
import { isAscii } from '../../model/validate.js';
import type { CallContext } from '../call-context.js';

export const firewall = {
  get: (ctx: CallContext): string =>
    ctx.dest.firewall
      .filter((r) => !isExpired(r))
      .map((r) => `${formatApiRule(r)}\n`)
      .join(''),

  /** Replaces the whole list; nothing changes unless every line parses. */
  set: async (ctx: CallContext): Promise<undefined> => {
    if (!isAscii(ctx.payload)) throw new ProtocolError('Rules contains non-ASCII characters');
    // Python's str.splitlines(): CR, vertical tab, form feed and the file/group/record separators end lines too.
    const lines = ctx.payload.toString('ascii').split(/\r\n|[\n\r\x0b\x0c\x1c-\x1e]/);
    if (lines.at(-1) === '') lines.pop();
    const rules = lines.map(parseApiRule);
    await ctx.services.vmFiles.saveFirewall(ctx.dest, rules);
    ctx.dest.firewall = rules;
    ctx.app.events.fire(ctx.dest, 'firewall-changed');
    return undefined;
  },

  reload: (ctx: CallContext): undefined => {
    ctx.app.events.fire(ctx.dest, 'firewall-changed');
    return undefined;
  },
};
