import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { parse } from 'yaml';

import type { App } from '../model/app.js';
import { QubesBackupProfileNotFoundError, QubesException } from '../model/errors.js';
import type { Vm } from '../model/vm.js';

/**
 * A backup profile, `<profile dir>/<id>.conf`, in upstream's YAML keys:
 * include (list or null for the default set), exclude, destination_vm,
 * destination_path, passphrase_text or passphrase_vm, compression (bool, or
 * the name of a compression program).
 */
export interface BackupProfile {
  readonly destinationVm: Vm;
  readonly destinationPath: string;
  /** null: every VM whose include_in_backups is set. */
  readonly include: readonly string[] | null;
  readonly exclude: readonly string[];
  /** false, or the compression filter's name ('gzip' for `true`). */
  readonly compression: false | string;
  /** Where the passphrase comes from; upstream checks it only when a backup runs. */
  readonly passphrase: { readonly text: string } | { readonly vm: string } | null;
}

function names(value: unknown): string[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value))
    throw new QubesException('Invalid backup profile - include/exclude must be lists');
  // Upstream still accepts the old `$tag:`/`$type:` spelling of the special names.
  return value.map((v) => String(v).replaceAll('$', '@'));
}

function required(data: Record<string, unknown>, key: string): unknown {
  if (!(key in data)) throw new QubesException(`Invalid backup profile - missing '${key}'`);
  return data[key];
}

export async function readProfile(app: App, dir: string, id: string): Promise<BackupProfile> {
  let text: string;
  try {
    text = await readFile(join(dir, `${id}.conf`), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new QubesBackupProfileNotFoundError(`Backup profile does not exist: ${id}`);
    }
    throw e;
  }
  // PyYAML's safe_load reads YAML 1.1 (`yes`/`no` are booleans there).
  const parsed: unknown = parse(text, { version: '1.1' });
  const data = (parsed !== null && typeof parsed === 'object' ? parsed : {}) as Record<string, unknown>;
  const destName = String(required(data, 'destination_vm'));
  const destinationPath = String(required(data, 'destination_path'));
  const include = required(data, 'include');
  const compression = data.compression ?? true;
  const destinationVm = app.domains.list().find((vm) => vm.name === destName);
  if (!destinationVm) throw new QubesException('Invalid destination_vm specified in backup profile');
  return {
    destinationVm,
    destinationPath,
    include: include === null ? null : names(include),
    exclude: names(data.exclude),
    compression: typeof compression === 'string' ? compression || false : compression ? 'gzip' : false,
    passphrase:
      'passphrase_text' in data
        ? { text: String(data.passphrase_text) }
        : 'passphrase_vm' in data
          ? { vm: String(data.passphrase_vm) }
          : null,
  };
}

/** qubes.utils.match_vm_name_with_special: a name, `@tag:<tag>` or `@type:<class>`. */
function matches(vm: Vm, name: string): boolean {
  if (name.startsWith('@tag:')) return vm.tags.has(name.slice('@tag:'.length));
  if (name.startsWith('@type:')) return vm.klass === name.slice('@type:'.length);
  return vm.name === name;
}

/** The VMs the profile selects, in qid order. */
export function profileVms(app: App, profile: BackupProfile): Vm[] {
  const all = [...app.domains.list()].sort((a, b) => a.qid - b.qid);
  const included =
    profile.include === null
      ? all.filter((vm) => vm.bool('include_in_backups'))
      : all.filter((vm) => profile.include?.some((n) => matches(vm, n)));
  return included.filter((vm) => !profile.exclude.some((n) => matches(vm, n)));
}
