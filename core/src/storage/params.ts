import { QubesValueError, StoragePoolException } from '../model/errors.js';
import type { PyInt } from '../model/validate.js';
import { parsePythonInt } from '../model/validate.js';

const TRUE_LITERALS = new Set(['1', 'yes', 'true', 'on']);
const FALSE_LITERALS = new Set(['0', 'no', 'false', 'off']);

/** Upstream's boolean literals (`qubes.property.bool`), case-insensitive. */
export function parseBool(value: string | boolean): boolean {
  if (typeof value === 'boolean') return value;
  const v = value.trim().toLowerCase();
  if (TRUE_LITERALS.has(v)) return true;
  if (FALSE_LITERALS.has(v)) return false;
  throw new QubesValueError(`Invalid literal for boolean property: '${value}'`);
}

/** Python's int() over a pool parameter or a qubes.xml attribute, as upstream's constructors apply it. */
export function parseIntParam(value: string, what: string): PyInt {
  const n = parsePythonInt(value);
  if (n === undefined) throw new QubesValueError(`Invalid value for ${what}: '${value}'`);
  return n;
}

export function parseIntStrict(value: string | number, what: string): number {
  if (typeof value === 'number') return value;
  if (!/^-?\d+$/.test(value.trim())) throw new QubesValueError(`Invalid value for ${what}: '${value}'`);
  return Number(value.trim());
}

/** How upstream writes a Python bool into qubes.xml and API bodies. */
export function pyBool(value: boolean): string {
  return value ? 'True' : 'False';
}

/** A parameter a pool driver cannot do without (dir_path, volume_group, ...). */
export function requireParam(params: Readonly<Record<string, string>>, key: string, driver: string): string {
  const v = params[key];
  if (v === undefined || v === '') throw new StoragePoolException(`${driver} pool requires ${key}`);
  return v;
}

/** Upstream's Pool.revisions_to_keep setter: -1 (keep all) or more. */
export function checkRevisionsToKeep(value: PyInt): void {
  if ((typeof value === 'number' && !Number.isInteger(value)) || value < -1)
    throw new QubesValueError("Value can't be lower than -1");
}

/** A driver's upper bound on revisions_to_keep, which its pools and their volumes both enforce. */
export function checkRevisionsLimit(driver: string, max: number | undefined, value: PyInt): void {
  if (max !== undefined && value > max) {
    throw new StoragePoolException(`Pool driver ${driver} supports maximum ${max} volume revision to keep`);
  }
}

/**
 * The two parameters every revision-keeping pool (file, file-reflink, lvm_thin) takes, checked once.
 * `revisionsText` is the parameter as given: upstream's Pool keeps it so (pool.Info and qubes.xml
 * print `007` as `007`), and only a volume made in the pool turns it into an int.
 */
export function revisionPoolParams(params: Readonly<Record<string, string>>): {
  ephemeralVolatile: boolean;
  revisionsToKeep: PyInt;
  revisionsText: string;
} {
  const ephemeralVolatile = parseBool(params['ephemeral_volatile'] ?? 'False');
  const revisionsText = params['revisions_to_keep'] ?? '1';
  const revisionsToKeep = parseIntParam(revisionsText, 'revisions_to_keep');
  checkRevisionsToKeep(revisionsToKeep);
  return { ephemeralVolatile, revisionsToKeep, revisionsText };
}
