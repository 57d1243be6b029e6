import { AP } from '../../model/app-properties.js';
import { PermissionDenied, ProtocolError } from '../../model/errors.js';
import { parseBoolPayload, validateNumber } from '../../model/validate.js';
import type { CallContext } from '../call-context.js';
import {
  addPoolFromPayload,
  driversBody,
  linesBody,
  poolInfoBody,
  usageDetailsBody,
} from './storage-wire.js';

/** enforce_arg over the pools. */
function poolName(ctx: CallContext): string {
  if (!ctx.services.storage.registry.hasPool(ctx.arg)) throw new PermissionDenied("Argument not in 'pools'");
  return ctx.arg;
}

const DEFAULT_POOL_PROPS = [
  AP.default_pool,
  AP.default_pool_kernel,
  AP.default_pool_private,
  AP.default_pool_root,
  AP.default_pool_volatile,
];

export const pool = {
  list: (ctx: CallContext): string => linesBody(ctx.services.storage.registry.poolNames()),
  listDrivers: (ctx: CallContext): string => driversBody(ctx.services.storage.registry.driverList()),
  info: async (ctx: CallContext): Promise<string> =>
    poolInfoBody(await ctx.services.storage.registry.poolInfo(poolName(ctx))),
  usageDetails: async (ctx: CallContext): Promise<string> =>
    usageDetailsBody(await ctx.services.storage.registry.usageDetails(poolName(ctx))),
  volumeList: async (ctx: CallContext): Promise<string> =>
    linesBody(await ctx.services.storage.registry.poolVolumeIds(poolName(ctx))),

  add: async (ctx: CallContext): Promise<undefined> => {
    // Controls that do not end a line would reach qubes.xml inside a parameter, where XML cannot hold them.
    if (/[\x00-\x08\x0e-\x1b\x1f]/.test(ctx.payload.toString('latin1')))
      throw new ProtocolError('Pool parameters contain control characters');
    await addPoolFromPayload(ctx.services.storage.registry, ctx.arg, ctx.payload);
    return undefined;
  },

  remove: async (ctx: CallContext): Promise<undefined> => {
    const defaults = Object.fromEntries(
      DEFAULT_POOL_PROPS.map((p) => [p.name, ctx.app.props.tryGet(p) ?? undefined]),
    );
    await ctx.services.storage.registry.removePool(poolName(ctx), defaults);
    return undefined;
  },

  setRevisionsToKeep: (ctx: CallContext): undefined => {
    const name = poolName(ctx);
    const value = validateNumber(ctx.payload.toString('latin1'), 'revisions to keep', true);
    if (value < -1) throw new ProtocolError("Value can't be lower than -1");
    ctx.services.storage.registry.setPoolRevisionsToKeep(name, value);
    return undefined;
  },

  setEphemeralVolatile: (ctx: CallContext): undefined => {
    const name = poolName(ctx);
    const value = parseBoolPayload(ctx.payload);
    ctx.services.storage.registry.setPoolEphemeralVolatile(name, value);
    return undefined;
  },
};
