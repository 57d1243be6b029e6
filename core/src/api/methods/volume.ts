import {
  PermissionDenied,
  ProtocolError,
  QubesVMNotFoundError,
  QubesVMNotHaltedError,
} from '../../model/errors.js';
import { parseBoolPayload, validateNumber } from '../../model/validate.js';
import type { Volume } from '../../storage/driver.js';
import { volumeBytes } from '../../storage/fsutil.js';
import { importStream, readSizeHeader } from '../../storage/importer.js';
import type { CallContext } from '../call-context.js';
import { linesBody, revisionName, volumeInfoBody } from './storage-wire.js';

/** enforce_arg over the destination's volumes. */
function volumeOf(ctx: CallContext): Volume {
  const v = ctx.services.storage.of(ctx.dest).get(ctx.arg);
  if (!v) throw new PermissionDenied(`Argument not in '${ctx.dest.name} volumes'`);
  return v;
}

/** Runs a data import between upstream's domain-volume-import-begin/end events. */
async function announcedImport(ctx: CallContext, size: string, run: () => Promise<void>): Promise<undefined> {
  ctx.app.events.fire(ctx.dest, 'domain-volume-import-begin', { volume: ctx.arg, size: size });
  try {
    await run();
  } catch (e) {
    ctx.app.events.fire(ctx.dest, 'domain-volume-import-end', { volume: ctx.arg, success: 'False' });
    throw e;
  }
  ctx.app.events.fire(ctx.dest, 'domain-volume-import-end', { volume: ctx.arg, success: 'True' });
  return undefined;
}

function requireHalted(ctx: CallContext): void {
  if (ctx.dest.powerState !== 'Halted') throw QubesVMNotHaltedError.forVm(ctx.dest.name);
}

export const volume = {
  list: (ctx: CallContext): string =>
    [...ctx.services.storage.of(ctx.dest).keys()].map((n) => `${n}\n`).join(''),

  info: async (ctx: CallContext): Promise<string> =>
    volumeInfoBody(await ctx.services.storage.registry.volumeInfo(volumeOf(ctx))),

  listSnapshots: async (ctx: CallContext): Promise<string> =>
    linesBody(await ctx.services.storage.registry.snapshotIds(volumeOf(ctx))),

  revert: async (ctx: CallContext): Promise<undefined> => {
    const v = volumeOf(ctx);
    await ctx.services.storage.registry.revert(v, revisionName(ctx.payload.toString('latin1').trim()));
    return undefined;
  },

  cloneFrom: (ctx: CallContext): string => ctx.services.storage.registry.cloneFrom(volumeOf(ctx)),

  cloneTo: async (ctx: CallContext): Promise<undefined> => {
    const v = volumeOf(ctx);
    if (/[^\x00-\x7f]/.test(ctx.payload.toString('latin1')))
      throw new ProtocolError('Token contains non-ASCII characters');
    await ctx.services.storage.registry.cloneTo(v, ctx.payload.toString('ascii').trim());
    ctx.app.events.fire(ctx.dest, 'domain-import-volume', { name: ctx.arg });
    return undefined;
  },

  resize: async (ctx: CallContext): Promise<undefined> => {
    const v = volumeOf(ctx);
    const size = validateNumber(ctx.payload.toString('latin1').trim(), 'volume size');
    await ctx.services.storage.registry.resize(v, size);
    return undefined;
  },

  clear: async (ctx: CallContext): Promise<undefined> => {
    const v = volumeOf(ctx);
    return announcedImport(ctx, String(await v.size()), () => ctx.services.storage.registry.clear(v));
  },

  setRevisionsToKeep: (ctx: CallContext): undefined => {
    const v = volumeOf(ctx);
    v.setRevisionsToKeep(validateNumber(ctx.payload.toString('latin1'), 'revisions to keep', true));
    return undefined;
  },

  setRw: (ctx: CallContext): undefined => {
    const v = volumeOf(ctx);
    const rw = parseBoolPayload(ctx.payload);
    requireHalted(ctx);
    v.setRw(rw);
    return undefined;
  },

  setEphemeral: (ctx: CallContext): undefined => {
    volumeOf(ctx).setEphemeral(parseBoolPayload(ctx.payload));
    return undefined;
  },

  /**
   * admin.vm.volume.Import / ImportWithSize served on the admin socket: the
   * payload streams straight to disk (upstream runs a qrexec script instead).
   */
  import:
    (withSize: boolean) =>
    async (ctx: CallContext): Promise<undefined> => {
      const v = volumeOf(ctx);
      requireHalted(ctx);
      const stream = ctx.payloadStream;
      if (!stream) throw new ProtocolError('expected payload');
      let source: AsyncIterable<Uint8Array> = stream;
      let size: number | undefined;
      if (withSize) {
        const header = await readSizeHeader(stream);
        if (header.size !== undefined) size = volumeBytes(header.size);
        source = header.data;
      }
      const declared = String(size ?? (await v.size()));
      // Reading the header waited on the client: the qube may have been started or removed meanwhile.
      // From here to the volume's import mark nothing waits, so a later Start or Remove sees the import.
      if (ctx.app.domains.byName(ctx.dest.name) !== ctx.dest) throw new QubesVMNotFoundError(ctx.dest.name);
      requireHalted(ctx);
      return announcedImport(ctx, declared, () => importStream(v, source, size));
    },
};
