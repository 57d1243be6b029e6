import { QubesValueError } from '../../model/errors.js';
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
    if (!isAscii(ctx.payload)) throw new QubesValueError('Firewall rules must be ASCII');
    const lines = ctx.payload.toString('ascii').split('\n');
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
