import { PermissionDenied, ProtocolError } from '../../model/errors.js';
import { validateNumber } from '../../model/validate.js';
import type { Volume } from '../../storage/driver.js';
import { importStream } from '../../storage/importer.js';
import type { CallContext } from '../call-context.js';
import { linesBody, revisionName, volumeInfoBody } from './storage-wire.js';

/**
 * The 2017 draft's admin.pool.volume.* calls, which name a volume by pool (the
 * argument) and vid (the first payload word) instead of by VM. Upstream dropped
 * them; they do not clash with anything, so we serve them on top of the same
 * storage operations.
 */
function words(ctx: CallContext, count: number): string[] {
  const w = ctx.payload.toString('latin1').trim().split(/\s+/);
  if (w.length !== count || w.some((x) => x === ''))
    throw new ProtocolError(`expected ${count} payload words`);
  return w;
}

function byVid(ctx: CallContext, vid: string): Volume {
  if (!ctx.services.storage.registry.hasPool(ctx.arg)) throw new PermissionDenied("Argument not in 'pools'");
  for (const vm of ctx.app.domains.list()) {
    for (const v of ctx.services.storage.of(vm).values())
      if (v.pool.name === ctx.arg && v.vid === vid) return v;
  }
  throw new PermissionDenied(`Argument not in '${ctx.arg} volumes'`);
}

export const poolVolume = {
  info: async (ctx: CallContext): Promise<string> =>
    volumeInfoBody(await ctx.services.storage.registry.volumeInfo(byVid(ctx, words(ctx, 1)[0] as string))),
  listSnapshots: async (ctx: CallContext): Promise<string> =>
    linesBody(await ctx.services.storage.registry.snapshotIds(byVid(ctx, words(ctx, 1)[0] as string))),
  setRevisionsToKeep: (ctx: CallContext): undefined => {
    const [vid = '', value = ''] = words(ctx, 2);
    byVid(ctx, vid).setRevisionsToKeep(validateNumber(value, 'revisions to keep', true));
    return undefined;
  },
  revert: async (ctx: CallContext): Promise<undefined> => {
    const [vid = '', revision = ''] = words(ctx, 2);
    await ctx.services.storage.registry.revert(byVid(ctx, vid), revisionName(revision));
    return undefined;
  },
  resize: async (ctx: CallContext): Promise<undefined> => {
    const [vid = '', size = ''] = words(ctx, 2);
    await ctx.services.storage.registry.resize(byVid(ctx, vid), validateNumber(size, 'volume size'));
    return undefined;
  },
  cloneFrom: (ctx: CallContext): string =>
    ctx.services.storage.registry.cloneFrom(byVid(ctx, words(ctx, 1)[0] as string)),
  cloneTo: async (ctx: CallContext): Promise<undefined> => {
    const [vid = '', token = ''] = words(ctx, 2);
    await ctx.services.storage.registry.cloneTo(byVid(ctx, vid), token);
    return undefined;
  },
  /** Payload: `<vid>\n` then the raw data (exactly the volume's size). */
  import: async (ctx: CallContext): Promise<undefined> => {
    const stream = ctx.payloadStream;
    if (!stream) throw new ProtocolError('expected payload');
    let head = Buffer.alloc(0);
    for await (const chunk of stream) {
      head = Buffer.concat([head, chunk as Buffer]);
      const nl = head.indexOf(0x0a);
      if (nl !== -1) {
        const v = byVid(ctx, head.subarray(0, nl).toString('latin1'));
        stream.unshift(head.subarray(nl + 1));
        await importStream(v, stream);
        return undefined;
      }
      if (head.length > 1024) break;
    }
    throw new ProtocolError('expected a volume id line');
  },
};
