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

  reload: async (ctx: CallContext): Promise<undefined> => {
    // Upstream loads a file it could not load again at its next use: one repaired by hand is taken.
    if ('unloadable' in ctx.dest.firewallState)
      ctx.dest.firewallState = await ctx.services.vmFiles.loadFirewall(ctx.dest);
    // Upstream fails only where a running qube's netvm reloads the rules; the file is broken either way.
    ctx.dest.checkFirewall();
    ctx.app.events.fire(ctx.dest, 'firewall-changed');
    return undefined;
  },
};
