import { ProtocolError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

/** The profile id names a file in the profile directory, so no path separators. */
function profileId(ctx: CallContext): string {
  if (ctx.arg.includes('/')) {
    throw new ProtocolError('Backup profile ID must not contain forward slash character');
  }
  return ctx.arg;
}

export const backup = {
  execute: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.backups.execute(profileId(ctx));
    return undefined;
  },
  cancel: (ctx: CallContext): undefined => {
    ctx.services.backups.cancel(profileId(ctx));
    return undefined;
  },
  info: (ctx: CallContext): Promise<string> => ctx.services.backups.info(profileId(ctx)),
};
