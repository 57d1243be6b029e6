import { QubesError } from './errors.js';

/**
 * Suffixes as upstream's `qubesadmin.utils.parse_size` knows them (case-insensitive; K/KB/M/MB/G/GB are
 * powers of 1000, Ki/KiB/Mi/MiB/Gi/GiB powers of 1024), plus T/TB/Ti/TiB. Longest first, so that
 * `KiB` is not taken for `B`-less `K`.
 */
const UNITS: readonly (readonly [string, bigint])[] = [
  ['KIB', 1024n],
  ['MIB', 1024n ** 2n],
  ['GIB', 1024n ** 3n],
  ['TIB', 1024n ** 4n],
  ['KI', 1024n],
  ['MI', 1024n ** 2n],
  ['GI', 1024n ** 3n],
  ['TI', 1024n ** 4n],
  ['KB', 1000n],
  ['MB', 1000n ** 2n],
  ['GB', 1000n ** 3n],
  ['TB', 1000n ** 4n],
  ['K', 1000n],
  ['M', 1000n ** 2n],
  ['G', 1000n ** 3n],
  ['T', 1000n ** 4n],
];

/** `3GiB` → 3221225472n, `512MiB`, `10G`, `1024`; whitespace between number and unit is allowed. */
export function parseSize(text: string): bigint {
  const upper = text.trim().toUpperCase();
  if (/^\d+$/.test(upper)) return BigInt(upper);
  for (const [unit, multiplier] of UNITS) {
    if (!upper.endsWith(unit)) continue;
    const number = upper.slice(0, -unit.length).trim();
    if (/^\d+$/.test(number)) return BigInt(number) * multiplier;
    break;
  }
  throw new QubesError(`Invalid size: ${text}.`, 'QubesException');
}

/** Binary units with one decimal: `512 B`, `1.5 KiB`, `2.0 GiB`. */
export function formatBytes(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(1)} ${units[i]}`;
}
