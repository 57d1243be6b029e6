import { QubesValueError } from './errors.js';

/**
 * Upstream's custom-persist extension: a feature `custom-persist.<key>` names a path the guest
 * keeps across reboots (bare, or `file|dir:owner:group:mode:/path`), exported to the running
 * qube's QubesDB as `/persist/<key>`.
 */
const CUSTOM_PERSIST_PREFIX = 'custom-persist.';
const QDB_PREFIX = '/persist/';
/** QubesDB's longest key, 63 bytes, less the prefix. */
const MAX_KEY = 63 - QDB_PREFIX.length;

/** Python's int(text, 8): blanks around, a sign, an optional 0o prefix, digits with single underscores. */
function pythonOctal(text: string): number | undefined {
  const match = /^\s*([+-]?)(?:0[oO]_?)?([0-7](?:_?[0-7])*)\s*$/.exec(text);
  if (!match) return undefined;
  const value = parseInt((match[2] ?? '').replace(/_/g, ''), 8);
  return match[1] === '-' ? -value : value;
}

function checkPath(path: string): void {
  if (!path.startsWith('/')) throw new QubesValueError(`invalid path '${path}'`);
}

function checkValue(value: string): void {
  if (value.startsWith('/')) return checkPath(value);
  const options = value.split(':');
  if (options.length < 5 || !options[4]?.startsWith('/'))
    throw new QubesValueError(`invalid value format: '${value}'`);
  const [type = '', , , mode = ''] = options;
  if (type !== 'file' && type !== 'dir')
    throw new QubesValueError(`invalid resource type option '${type}' in value '${value}'`);
  const bits = pythonOctal(mode);
  if (bits === undefined || bits < 0 || bits > 0o7777)
    throw new QubesValueError(`invalid mode option '${mode}' in value '${value}'`);
  checkPath(options.slice(4).join(':'));
}

/**
 * Refuses a custom-persist feature its guest would be given wrong, in upstream's words (its
 * handler runs once the feature is set, so the refused value stays set, and a start fails on it).
 * Other features pass.
 */
export function checkCustomPersist(feature: string, value: string): void {
  if (!feature.startsWith(CUSTOM_PERSIST_PREFIX)) return;
  const key = feature.slice(CUSTOM_PERSIST_PREFIX.length);
  if (!key) throw new QubesValueError('custom-persist key cannot be empty');
  if (key.length > MAX_KEY)
    throw new QubesValueError(`custom-persist key is too long (max ${MAX_KEY}), ignoring: ${key}`);
  checkValue(value);
}

/** The QubesDB entry of a valid custom-persist feature, or none. */
export function customPersistEntry(feature: string, value: string): [string, string] | undefined {
  if (!feature.startsWith(CUSTOM_PERSIST_PREFIX)) return undefined;
  try {
    checkCustomPersist(feature, value);
  } catch {
    return undefined;
  }
  return [`${QDB_PREFIX}${feature.slice(CUSTOM_PERSIST_PREFIX.length)}`, value];
}
