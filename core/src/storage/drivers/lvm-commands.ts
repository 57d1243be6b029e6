import { existsSync } from 'node:fs';

import { StoragePoolException } from '../../model/errors.js';
import { describeFailure, runCommand, type RunResult } from '../../run-command.js';

/** One row of `lvs`: sizes in bytes, as upstream's lvm driver keeps them in its size cache. */
export interface LvInfo {
  readonly size: number;
  readonly usage: number;
  /** Name of the thin pool a thin volume lives in ('' for other LVs). */
  readonly poolLv: string;
  /** `lv_attr`: [0] is the type (`t` thin pool, `V` thin volume), [4] the state (`a` active). */
  readonly attr: string;
  /** LV name of the volume a thin snapshot was taken from ('' when none). */
  readonly origin: string;
  readonly metadataSize: number | undefined;
  readonly metadataUsage: number | undefined;
}

/** Keyed by `<vg>/<lv>`, the form upstream's vids take. */
export type LvTable = ReadonlyMap<string, LvInfo>;

/** The actions upstream's driver performs, each one lvm command line. */
export type LvmAction =
  | { readonly op: 'create'; readonly pool: string; readonly name: string; readonly size: number }
  | { readonly op: 'clone'; readonly from: string; readonly to: string }
  | { readonly op: 'remove'; readonly lv: string }
  | { readonly op: 'rename'; readonly from: string; readonly to: string }
  | { readonly op: 'resize'; readonly lv: string; readonly size: number }
  | { readonly op: 'activate'; readonly lv: string };

/** udevd's control socket: present while udev runs and creates device nodes. */
const UDEV_CONTROL = '/run/udev/control';

const LVS_FIELDS =
  'vg_name,pool_lv,name,lv_size,data_percent,lv_attr,origin,lv_metadata_size,metadata_percent';

/** lvm warns on every thin volume larger than its pool's free space; thin pools over-provision on purpose. */
const OVERPROVISION_WARNING = 'exceeds the size of thin pool';

/**
 * What `lvs` may print: a few hundred bytes a volume, so thousands of volumes fit; a larger report
 * is refused rather than parsed cut short.
 */
const LVS_OUTPUT_LIMIT = 64 * 1024 * 1024;

/**
 * The environment lvm runs in: messages in one language (they are relayed as errors), no
 * warning about descriptors the daemon holds open, and, where no udev runs (containers, minimal
 * hosts), lvm making the /dev nodes itself instead of waiting for udev to make them.
 */
export function lvmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C.UTF-8', LVM_SUPPRESS_FD_WARNINGS: '1' };
  if (!existsSync(UDEV_CONTROL)) env['DM_DISABLE_UDEV'] = '1';
  return env;
}

async function exec(argv: readonly string[], stdoutLimit?: number): Promise<RunResult> {
  // Not root: lvm needs it, and upstream goes through sudo the same way.
  const full = process.getuid?.() === 0 ? ['lvm', ...argv] : ['sudo', '-n', 'lvm', ...argv];
  try {
    return await runCommand(full[0] as string, full.slice(1), {
      env: lvmEnv(),
      ...(stdoutLimit !== undefined ? { stdoutLimit } : {}),
    });
  } catch (e) {
    throw new StoragePoolException(e instanceof Error ? e.message : String(e));
  }
}

/** The lvm command line of an action (upstream's options, so LVs look the same to its tools). */
export function lvmArgv(action: LvmAction): string[] {
  switch (action.op) {
    case 'create':
      return [
        'lvcreate',
        '--thin',
        '--setactivationskip=n',
        '--activate=y',
        `--name=${action.name}`,
        `--virtualsize=${action.size}B`,
        '--',
        action.pool,
      ];
    case 'clone':
      return [
        'lvcreate',
        '--setactivationskip=n',
        '--activate=y',
        // Upstream adds --type=thin, which Debian 12's lvm 2.03.16 refuses next to --snapshot;
        // a snapshot without a size of a thin origin is a thin snapshot anyway.
        '--snapshot',
        `--name=${action.to.slice(action.to.indexOf('/') + 1)}`,
        '--',
        action.from,
      ];
    case 'remove':
      // A vid without a slash would name a whole volume group.
      if (!action.lv.includes('/') || action.lv.startsWith('/'))
        throw new StoragePoolException(`Refusing to remove ${action.lv}`);
      return ['lvremove', '--force', '--', action.lv];
    case 'rename':
      return ['lvrename', '--', action.from, action.to];
    case 'resize':
      return ['lvresize', `--size=${action.size}B`, '--', action.lv];
    case 'activate':
      return ['lvchange', '--activate=y', '--', action.lv];
  }
}

/** Runs one action; lvm's stderr (without the over-provisioning warning) becomes the error message. */
export async function runLvm(action: LvmAction): Promise<void> {
  const out = await exec(lvmArgv(action));
  if (out.code === 0) return;
  const err = out.stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.includes(OVERPROVISION_WARNING))
    .join('\n');
  throw new StoragePoolException(err || describeFailure(out));
}

function bytes(field: string | undefined): number | undefined {
  if (field === undefined || field === '') return undefined;
  return Number(field.replace(/B$/, ''));
}

/** Upstream's arithmetic: int(size / 100 * percent). */
function fraction(size: number, percent: string | undefined): number {
  return percent ? Math.trunc((size / 100) * Number(percent)) : 0;
}

interface LvsRow {
  vg_name?: string;
  pool_lv?: string;
  lv_name?: string;
  lv_size?: string;
  data_percent?: string;
  lv_attr?: string;
  origin?: string;
  lv_metadata_size?: string;
  metadata_percent?: string;
}

/** Parses `lvs --reportformat=json` output, skipping rows without a VG, name or size as upstream does. */
export function parseLvs(json: string): Map<string, LvInfo> {
  const parsed = JSON.parse(json) as { report?: { lv?: LvsRow[] }[] };
  const table = new Map<string, LvInfo>();
  for (const row of parsed.report?.[0]?.lv ?? []) {
    const size = bytes(row.lv_size);
    if (!row.vg_name || !row.lv_name || size === undefined) continue;
    const metadataSize = bytes(row.lv_metadata_size);
    table.set(`${row.vg_name}/${row.lv_name}`, {
      size,
      usage: fraction(size, row.data_percent),
      poolLv: row.pool_lv ?? '',
      attr: row.lv_attr ?? '',
      origin: row.origin ?? '',
      metadataSize,
      metadataUsage:
        metadataSize !== undefined && row.metadata_percent
          ? fraction(metadataSize, row.metadata_percent)
          : undefined,
    });
  }
  return table;
}

/** Every LV of every volume group (upstream's cache has them all, and so may a pool's list). */
export async function listLvs(): Promise<LvTable> {
  const out = await exec(
    ['lvs', '--quiet', '--quiet', '--noheadings', '-o', LVS_FIELDS, '--units', 'b', '--reportformat=json'],
    LVS_OUTPUT_LIMIT,
  );
  if (out.code !== 0) throw new StoragePoolException(out.stderr.trim() || describeFailure(out));
  if (out.stdoutTruncated)
    throw new StoragePoolException(`${out.command} printed more than ${LVS_OUTPUT_LIMIT} bytes`);
  return parseLvs(out.stdout);
}

/** `/dev/mapper/` name of an LV: dashes doubled, the VG/LV slash turned into one dash. */
export function mapperPath(vid: string): string {
  return `/dev/mapper/${vid.replace(/-/g, '--').replace(/\//g, '-')}`;
}
