import { QubesValueError } from '../model/errors.js';

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

export function parseIntStrict(value: string | number, what: string): number {
  if (typeof value === 'number') return value;
  if (!/^-?\d+$/.test(value.trim())) throw new QubesValueError(`Invalid value for ${what}: '${value}'`);
  return Number(value.trim());
}

/** How upstream writes a Python bool into qubes.xml and API bodies. */
export function pyBool(value: boolean): string {
  return value ? 'True' : 'False';
}
