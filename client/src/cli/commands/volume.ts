import { createReadStream, fstatSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';

import type { Command } from 'commander';

import { QubesError, QubesNoSuchPropertyError, StoragePoolException } from '../../errors.js';
import { parseSize } from '../../size.js';
import { confirm } from '../confirm.js';
import { action, type CliContext } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { spinner, transferProgress } from '../progress.js';
import { formatTable } from '../table.js';

/** A volume named on the command line as `VM:VOLUME`, checked to exist. */
interface VolumeRef {
  vm: string;
  volume: string;
}

/** What upstream's `qvm-volume info` shows, in its order (`is_outdated` comes last, separately). */
const INFO_ITEMS = [
  'pool',
  'vid',
  'rw',
  'source',
  'save_on_stop',
  'snap_on_start',
  'size',
  'usage',
  'revisions_to_keep',
  'ephemeral',
] as const;

/** The properties `qvm-volume config` may change. */
const SETTABLE = ['rw', 'revisions_to_keep', 'ephemeral'];

/** Upstream's runtime errors (exit status 1) carry the plain exception type. */
function failure(message: string): QubesError {
  return new QubesError(message, 'QubesException');
}

/**
 * Like upstream's VMVolumeAction: `admin.vm.List`, then `admin.vm.volume.List` on the qube; a missing
 * qube or volume is a runtime error, a malformed argument a usage error.
 */
async function resolveVolume(ctx: CliContext, spec: string): Promise<VolumeRef> {
  const parts = spec.split(':');
  if (parts.length !== 2) throw new UsageError('expected a vm & volume combination like foo:bar');
  const [vm = '', volume = ''] = parts;
  if (!(await ctx.listVms()).some((v) => v.name === vm)) throw failure(`no vm '${vm}'`);
  if (!(await ctx.client.volumes.list(vm)).includes(volume)) {
    throw failure(`vm '${vm}' has no volume '${volume}'`);
  }
  return { vm, volume };
}

const refName = (ref: VolumeRef) => `${ref.vm}:${ref.volume}`;

export function registerVolume(program: Command, io: CliIo): void {
  const volume = program.command('volume').description("manage qubes' volumes (like qvm-volume)");

  volume
    .command('list', { isDefault: true })
    .aliases(['ls', 'l'])
    .description(
      'volumes of the given qubes (default: all) with their pool:vid and whether they have revisions',
    )
    .argument('[vm...]')
    .option('-p, --pool <pool>', 'only volumes in this pool (repeatable)', collect, [])
    .option('--full', 'print the pool:vid on every line, even on a terminal')
    .action(action(io, listVolumes));

  volume
    .command('info')
    .alias('i')
    .description("a volume's properties and revisions, or one property ('revisions': one per line)")
    .argument('<vm:volume>')
    .argument('[property]')
    .action(action(io, infoVolume));

  volume
    .command('set')
    .aliases(['config', 'c', 's'])
    .description('set rw, revisions_to_keep or ephemeral of a volume')
    .argument('<vm:volume>')
    .argument('<property>')
    .argument('<value>')
    .action(
      action(io, async (ctx, command) => {
        const [spec, property, value] = command.processedArgs as [string, string, string];
        const ref = await resolveVolume(ctx, spec);
        if (!SETTABLE.includes(property)) {
          throw new QubesNoSuchPropertyError(`Invalid property: ${property}`, 'QubesNoSuchPropertyError');
        }
        const volumes = ctx.client.volumes;
        // The value goes out as typed, as upstream sends str(value); qubesd validates it.
        if (property === 'rw') await volumes.setRw(ref.vm, ref.volume, value);
        else if (property === 'ephemeral') await volumes.setEphemeral(ref.vm, ref.volume, value);
        else await volumes.setRevisionsToKeep(ref.vm, ref.volume, value);
        return 0;
      }),
    );

  volume
    .command('resize')
    .alias('extend')
    .description('grow a volume to SIZE (bytes, or with a unit: 512MiB, 3GiB, 10G ...)')
    .argument('<vm:volume>')
    .argument('<size>')
    .option('-f, --force', 'send the request even if the new size is smaller than the current one')
    .action(
      action(io, async (ctx, command) => {
        const [spec, sizeText] = command.processedArgs as [string, string];
        const ref = await resolveVolume(ctx, spec);
        const size = parseSize(sizeText);
        if (!command.opts<{ force?: boolean }>().force) {
          const current = BigInt((await ctx.client.volumes.info(ref.vm, ref.volume)).size || '0');
          if (size < current) {
            const name = refName(ref);
            throw new StoragePoolException(
              `Refusing to shrink volume ${name} from ${current} to ${size} bytes.\n` +
                'If you really know what you are doing: Manually shrink the filesystem on the volume ' +
                'first, and repartition the volume if it is partitioned. Do this in a VM, not in dom0. ' +
                `Then use 'qvm-volume resize --force ${name} ${size}'`,
              'StoragePoolException',
            );
          }
        }
        await ctx.client.volumes.resize(ref.vm, ref.volume, size);
        return 0;
      }),
    );

  volume
    .command('revert')
    .aliases(['rv', 'r'])
    .description('revert a volume to a revision (default: the latest one)')
    .argument('<vm:volume>')
    .argument('[revision]')
    .action(
      action(io, async (ctx, command) => {
        const [spec, given] = command.processedArgs as [string, string?];
        const ref = await resolveVolume(ctx, spec);
        let revision = given;
        if (!revision) {
          revision = (await ctx.client.volumes.listSnapshots(ref.vm, ref.volume)).at(-1);
          if (revision === undefined) {
            throw new StoragePoolException('No snapshots available', 'StoragePoolException');
          }
        }
        await ctx.client.volumes.revert(ref.vm, ref.volume, revision);
        return 0;
      }),
    );

  volume
    .command('clear')
    .description('empty a volume, keeping its size (the old data may be kept as a revision)')
    .argument('<vm:volume>')
    .option('-f, --force', 'do not ask for confirmation')
    .action(
      action(io, async (ctx, command) => {
        const [spec] = command.processedArgs as [string];
        const ref = await resolveVolume(ctx, spec);
        const ask = 'This will empty the volume!\n(Data may be preserved in a revision.)';
        if (!command.opts<{ force?: boolean }>().force && !(await confirm(ctx, [ask]))) {
          ctx.printError('Clear cancelled.');
          return 1;
        }
        await ctx.client.volumes.clear(ref.vm, ref.volume);
        return 0;
      }),
    );

  volume
    .command('import')
    .description(
      "replace a volume's data with a file ('-' for stdin); by default the volume takes the file's size " +
        '(ImportWithSize)',
    )
    .argument('<vm:volume>')
    .argument('<path>')
    .option('--size <size>', 'the data size (for stdin); the volume is resized to it (units as for resize)')
    .option('--with-size', "ImportWithSize with the file's own size (the default when it is known)")
    .option('--no-resize', "plain Import: the data must be exactly the volume's current size")
    .action(action(io, importVolume));

  volume
    .command('clone')
    .description('replace the data of DST with that of SRC (CloneFrom, then CloneTo; copied by qubesd)')
    .argument('<src-vm:volume>')
    .argument('<dst-vm:volume>')
    .option('-f, --force', 'do not ask for confirmation')
    .action(
      action(io, async (ctx, command) => {
        const [srcSpec, dstSpec] = command.processedArgs as [string, string];
        const src = await resolveVolume(ctx, srcSpec);
        const dst = await resolveVolume(ctx, dstSpec);
        const volumes = ctx.client.volumes;
        const [srcInfo, dstInfo] = [
          await volumes.info(src.vm, src.volume),
          await volumes.info(dst.vm, dst.volume),
        ];
        if (srcInfo.save_on_stop !== 'True' || dstInfo.save_on_stop !== 'True') {
          throw new StoragePoolException('Volumes must be save_on_stop for cloning', 'StoragePoolException');
        }
        const ask =
          `This will clone the data from ${refName(src)} into ${refName(dst)}!\n` +
          `(Data in ${refName(dst)} may be preserved in a revision.)`;
        if (!command.opts<{ force?: boolean }>().force && !(await confirm(ctx, [ask]))) {
          ctx.printError('Clone cancelled.');
          return 1;
        }
        const spin = spinner(ctx.io.stderr, `cloning ${refName(src)} to ${refName(dst)}`);
        try {
          await volumes.clone(src.vm, src.volume, dst.vm, dst.volume);
        } catch (err) {
          spin.stop(false);
          throw err;
        }
        spin.stop(true);
        return 0;
      }),
    );
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface ListedVolume {
  pool: string;
  vid: string;
  revisions: string[];
  /** (qube, volume name) pairs using this pool:vid, in qube order. */
  domains: [string, string][];
}

/**
 * `qvm-volume list`: one entry per pool:vid (a shared kernel volume is one entry), sorted by pool then
 * vid, each line naming a qube using it; on a terminal, repeated pool:vid cells are left blank unless
 * --full. REVERT_POSSIBLE says whether the volume has revisions.
 */
async function listVolumes(ctx: CliContext, command: Command): Promise<number> {
  const [names] = command.processedArgs as [string[]];
  const opts = command.opts<{ pool: string[]; full?: boolean }>();
  const vms = names.length > 0 ? await ctx.requireVms(names) : await ctx.listVms();
  if (opts.pool.length > 0) {
    const pools = await ctx.client.pools.list();
    if (opts.pool.some((p) => !pools.includes(p))) {
      throw new UsageError(`No such pools: [${opts.pool.map((p) => `'${p}'`).join(', ')}]`);
    }
  }
  const byKey = new Map<string, ListedVolume>();
  for (const vm of vms) {
    for (const name of await ctx.client.volumes.list(vm.name)) {
      const info = await ctx.client.volumes.info(vm.name, name);
      const pool = info.pool ?? '';
      const vid = info.vid ?? '';
      if (opts.pool.length > 0 && !opts.pool.includes(pool)) continue;
      const revisions = await ctx.client.volumes.listSnapshots(vm.name, name);
      const key = `${pool}:${vid}`;
      const entry = byKey.get(key) ?? { pool, vid, revisions, domains: [] };
      entry.revisions = revisions;
      entry.domains.push([vm.name, name]);
      byKey.set(key, entry);
    }
  }
  const entries = [...byKey.values()].sort((a, b) =>
    a.pool !== b.pool ? (a.pool < b.pool ? -1 : 1) : a.vid < b.vid ? -1 : a.vid > b.vid ? 1 : 0,
  );
  if (ctx.json) {
    ctx.printJson(
      entries.flatMap((e) =>
        e.domains.map(([vm, volume]) => ({ vm, volume, pool: e.pool, vid: e.vid, revisions: e.revisions })),
      ),
    );
    return 0;
  }
  const full = opts.full === true || (ctx.io.stdout as { isTTY?: boolean }).isTTY !== true;
  const rows: string[][] = [['POOL:VOLUME', 'VMNAME', 'VOLUME_NAME', 'REVERT_POSSIBLE']];
  for (const e of entries) {
    const label = `${e.pool}:${e.vid}`;
    const revert = e.revisions.length > 0 ? 'Yes' : 'No';
    // Upstream shows the last qube first, then the others in order.
    const [first, ...rest] = [...e.domains.slice(-1), ...e.domains.slice(0, -1)];
    if (!first) continue;
    rows.push([label, first[0], first[1], revert]);
    for (const [vm, volume] of rest) rows.push([full ? label : '', vm, volume, revert]);
  }
  ctx.print(formatTable(rows));
  return 0;
}

async function infoVolume(ctx: CliContext, command: Command): Promise<number> {
  const [spec, property] = command.processedArgs as [string, string?];
  const ref = await resolveVolume(ctx, spec);
  const volumes = ctx.client.volumes;
  if (property === 'revisions') {
    const revisions = await volumes.listSnapshots(ref.vm, ref.volume);
    if (ctx.json) ctx.printJson(revisions);
    else for (const rev of revisions) ctx.printLine(rev);
    return 0;
  }
  const info = await volumes.info(ref.vm, ref.volume);
  const outdated = info.is_outdated === 'True' ? 'True' : 'False';
  if (property !== undefined) {
    let value: string;
    if (property === 'is_outdated') value = outdated;
    else if ((INFO_ITEMS as readonly string[]).includes(property)) value = shown(info, property, false);
    else throw new StoragePoolException(`No such property: ${property}`, 'StoragePoolException');
    if (ctx.json) ctx.printJson(value);
    else ctx.printLine(value);
    return 0;
  }
  const revisions = await volumes.listSnapshots(ref.vm, ref.volume);
  if (ctx.json) {
    ctx.printJson({ ...info, revisions });
    return 0;
  }
  ctx.print(
    formatTable([...INFO_ITEMS.map((item) => [item, shown(info, item, true)]), ['is_outdated', outdated]]),
  );
  if (revisions.length === 0) ctx.printLine('List of available revisions (for revert): none');
  else {
    ctx.printLine('List of available revisions (for revert):');
    for (const rev of revisions) ctx.printLine(`  ${rev}`);
  }
  return 0;
}

/** A property as upstream's Volume object renders it (booleans normalised, `-1` explained in the table). */
function shown(info: Record<string, string>, item: string, pretty: boolean): string {
  const raw = info[item] ?? '';
  if (item === 'ephemeral') return raw === 'True' ? 'True' : 'False';
  if (item === 'revisions_to_keep' && pretty && raw === '-1') return '-1 (snapshot disabled)';
  return raw;
}

interface ImportOptions {
  size?: string;
  withSize?: boolean;
  /** commander's `--no-resize` sets `resize: false`. */
  resize: boolean;
}

async function importVolume(ctx: CliContext, command: Command): Promise<number> {
  const [spec, path] = command.processedArgs as [string, string];
  const opts = command.opts<ImportOptions>();
  if (!opts.resize && (opts.size !== undefined || opts.withSize)) {
    throw new UsageError('--no-resize cannot be combined with --size or --with-size');
  }
  const ref = await resolveVolume(ctx, spec);
  const given = opts.size === undefined ? undefined : parseSize(opts.size);
  let source: Readable | NodeJS.ReadableStream;
  let known: bigint | undefined;
  if (path === '-') {
    source = ctx.io.stdin;
    // A redirected regular file has a size; a pipe or terminal has none.
    const fd = (ctx.io.stdin as { fd?: unknown }).fd;
    if (typeof fd === 'number') {
      try {
        const st = fstatSync(fd);
        if (st.isFile()) known = BigInt(st.size);
      } catch {
        // Not a file descriptor we can inspect: the size stays unknown.
      }
    }
  } else {
    const st = await stat(path);
    if (st.isFile()) known = BigInt(st.size);
    source = createReadStream(path, { highWaterMark: 1 << 20 });
  }
  const withSize = opts.resize;
  const size = given ?? known;
  if (withSize && size === undefined) {
    if (path !== '-') (source as Readable).destroy();
    throw failure(
      `Failed to get ${path === '-' ? 'standard input' : path} file size, specify it explicitly with --size, ` +
        'or use --no-resize option',
    );
  }
  const total = size === undefined ? undefined : Number(size);
  const bar = transferProgress(ctx.io.stderr, `importing ${refName(ref)}`, total);
  try {
    await ctx.client.volumes.import(ref.vm, ref.volume, source as AsyncIterable<Uint8Array>, {
      withSize,
      size,
      onProgress: (sent) => bar.update(sent),
    });
  } catch (err) {
    bar.abort();
    throw err;
  } finally {
    if (path !== '-') (source as Readable).destroy();
  }
  bar.finish();
  return 0;
}
