import { ProtocolError, QubesVMError, QubesVMNotHaltedError } from '../../model/errors.js';
import type { CallContext } from '../call-context.js';

const SHUTDOWN_FLAGS = ['force', 'wait'];

/** A RemoteVM runs elsewhere: upstream's class refuses these actions outright, in these words. */
function refuseRemote(ctx: CallContext, action: 'start' | 'suspend' | 'shutdown' | 'kill'): void {
  if (ctx.dest.klass !== 'RemoteVM') return;
  const message = `Cannot ${action} a RemoteVM.`;
  throw action === 'start' ? new QubesVMNotHaltedError(message) : new QubesVMError(message);
}

export const lifecycle = {
  start: async (ctx: CallContext): Promise<undefined> => {
    refuseRemote(ctx, 'start');
    await ctx.services.lifecycle.start(ctx.dest);
    return undefined;
  },
  shutdown: async (ctx: CallContext): Promise<undefined> => {
    // Any '+'-joined list of the flags, repeats included, as upstream splits it.
    const flags = ctx.arg === '' ? [] : ctx.arg.split('+');
    if (!flags.every((f) => SHUTDOWN_FLAGS.includes(f))) {
      throw new ProtocolError(`Argument must match: ${SHUTDOWN_FLAGS.join(', ')}`);
    }
    refuseRemote(ctx, 'shutdown');
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
    refuseRemote(ctx, 'suspend');
    await ctx.services.lifecycle.suspend(ctx.dest);
    return undefined;
  },
  resume: async (ctx: CallContext): Promise<undefined> => {
    await ctx.services.lifecycle.resume(ctx.dest);
    return undefined;
  },
  kill: async (ctx: CallContext): Promise<undefined> => {
    refuseRemote(ctx, 'kill');
    await ctx.services.lifecycle.kill(ctx.dest);
    return undefined;
  },
  /** The console's pty path, for a dom0 script to relay (admin-api-reference §2.3). */
  console: (ctx: CallContext): Promise<string> => ctx.services.lifecycle.console(ctx.dest),
};
