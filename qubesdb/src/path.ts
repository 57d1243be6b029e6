import { QDB_MAX_PATH } from './protocol.js';

/**
 * The characters upstream's daemon accepts in a path (verify_path): ASCII
 * letters, digits and `-_/.:@`, no leading '-', at most 63 bytes. The empty
 * path is valid in a header (a multiread of everything, an end marker).
 */
export function isValidPath(path: string): boolean {
  if (path.length >= QDB_MAX_PATH) return false;
  return /^(?!-)[A-Za-z0-9_/.:@-]*$/.test(path);
}

/** A path that can hold a value: valid, starting with '/', not ending with '/' (qubesdb_insert). */
export function isKeyPath(path: string): boolean {
  return isValidPath(path) && path.startsWith('/') && !path.endsWith('/');
}

/** Whether `path` names a directory (every key under it) rather than one key. */
export function isDirPath(path: string): boolean {
  return path.endsWith('/');
}

/** Values are bytes without NUL (verify_data). */
export function isValidValue(value: Buffer): boolean {
  return !value.includes(0);
}
