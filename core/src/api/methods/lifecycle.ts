import { ProtocolError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

const SHUTDOWN_ARGS = new Set(['', 'force', 'wait', 'force+wait', 'wait+force']);

export const lifecycle = {
  start: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.start(ctx.dest);
    return undefined;
  },
  shutdown: async (ctx: CallContext): Promise<undefined> => {
    if (!SHUTDOWN_ARGS.has(ctx.arg)) throw new ProtocolError('Argument must match: force, wait');
    const flags = ctx.arg.split('+');
    await ctx.services.lifecycle.shutdown(ctx.dest, {
      force: flags.includes('force'),
      wait: flags.includes('wait'),
    });
    return undefined;
  },
  pause: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.pause(ctx.dest);
    return undefined;
  },
  unpause: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.unpause(ctx.dest);
    return undefined;
  },
  suspend: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.suspend(ctx.dest);
    return undefined;
  },
  resume: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.resume(ctx.dest);
    return undefined;
  },
  kill: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.kill(ctx.dest);
    return undefined;
  },
  /** The console's pty path, for a dom0 script to relay (admin-api-reference §2.3). */
  console: (ctx: CallContext): Promise<string> => ctx.services.lifecycle.console(ctx.dest),
};
