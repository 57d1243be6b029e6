import { PermissionDenied, ProtocolError } from '../../model/errors.js';
import type { PoolDriver } from '../../storage/driver.js';
import { isAscii } from '../../model/validate.js';
import { pyBool } from '../../storage/params.js';
import type { PoolAuthorizer, PoolInfo, PoolRegistry, VolumeInfo } from '../../storage/pool-registry.js';

/**
 * The storage methods' side of the wire: the admin.pool.Add payload and the
 * revision name are parsed here, and storage's typed answers become upstream's
 * `key=value` and one-per-line bodies here, so storage never sees a payload.
 */

const SAFE_NAME = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.';
const SAFE_REVISION = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.';
/** Python's str.splitlines() boundaries within ASCII (\r\n counts once). */
const LINE_BREAKS = new Set([0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e]);

function splitLines(text: string): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (!LINE_BREAKS.has(text.charCodeAt(i))) continue;
    out.push(text.slice(start, i));
    if (text[i] === '\r' && text[i + 1] === '\n') i++;
    start = i + 1;
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

function onlyFrom(s: string, allowed: string): boolean {
  for (const c of s) if (!allowed.includes(c)) return false;
  return true;
}

/** One line per item, each ending in a newline (an empty list is an empty body). */
export function linesBody(items: Iterable<string>): string {
  let out = '';
  for (const l of items) out += `${l}\n`;
  return out;
}

/** `key=value` lines in key order. */
function sortedKeyValues(record: Readonly<Record<string, string | number>>): string {
  return linesBody(
    Object.keys(record)
      .sort()
      .map((k) => `${k}=${record[k]}`),
  );
}

/** `admin.pool.ListDrivers` body: each driver, then its parameters, in upstream's order. */
export function driversBody(drivers: readonly PoolDriver[]): string {
  return linesBody(drivers.map((d) => [d.name, ...d.params.map((p) => p.name)].join(' ')));
}

/** `admin.pool.Info` body: sorted config, then size, usage and included_in when known. */
export function poolInfoBody(info: PoolInfo): string {
  let body = sortedKeyValues(info.config);
  if (info.size !== undefined) body += `size=${info.size}\n`;
  if (info.usage !== undefined) body += `usage=${info.usage}\n`;
  if (info.includedIn !== undefined) body += `included_in=${info.includedIn}\n`;
  return body;
}

/** `admin.pool.UsageDetails` body. */
export function usageDetailsBody(details: Readonly<Record<string, number>>): string {
  return sortedKeyValues(details);
}

/** `admin.vm.volume.Info` body, in upstream's field order. */
export function volumeInfoBody(info: VolumeInfo): string {
  const fields: [string, string][] = [
    ['pool', info.pool],
    ['vid', info.vid],
    ['size', String(info.size)],
    ['usage', String(info.usage)],
    ['rw', pyBool(info.rw)],
    ['source', info.source ?? ''],
    ['path', info.path ?? ''],
    ['save_on_stop', pyBool(info.saveOnStop)],
    ['snap_on_start', pyBool(info.snapOnStart)],
    ['revisions_to_keep', String(info.revisionsToKeep)],
    ['ephemeral', pyBool(info.ephemeral)],
    ['is_outdated', pyBool(info.isOutdated)],
  ];
  return linesBody(fields.map(([k, v]) => `${k}=${v}`));
}

/** A revision name from a Revert payload (already stripped), checked against upstream's safe set. */
export function revisionName(text: string): string {
  if (!onlyFrom(text, SAFE_REVISION)) {
    throw new ProtocolError(`Revision name must be in safe set: ${SAFE_REVISION}`);
  }
  return text;
}

/** The admin.pool.Add payload: `key=value` lines, one of them `name`. */
export interface PoolAddRequest {
  name: string;
  params: Record<string, string>;
}

/** Parses an admin.pool.Add payload with upstream's checks, in upstream's order. */
export function parsePoolAddPayload(payload: Uint8Array | string): PoolAddRequest {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : Buffer.from(payload);
  if (!isAscii(bytes)) throw new ProtocolError('Pool parameters contains non-ASCII characters');
  const rows = splitLines(bytes.toString('latin1'));
  if (!rows.every((l) => l.includes('='))) throw new ProtocolError('Options must be separated by equal sign');
  const pairs = rows.map((l): [string, string] => {
    const i = l.indexOf('=');
    return [l.slice(0, i), l.slice(i + 1)];
  });
  if (new Set(pairs.map(([k]) => k)).size !== pairs.length) throw new ProtocolError('Options must be unique');
  const params = Object.fromEntries(pairs);
  const name = params['name'];
  if (name === undefined) throw new ProtocolError('Pool configuration must contain key: name');
  delete params['name'];
  if (!name || !onlyFrom(name, SAFE_NAME))
    throw new ProtocolError(`Pool name must be in safe set: ${SAFE_NAME}`);
  return { name, params };
}

/**
 * `admin.pool.Add+<driver>` with its raw payload: the driver must exist, the
 * payload must parse and name only the driver's parameters; storage then checks
 * the required ones, runs `authorize` and creates the pool.
 */
export async function addPoolFromPayload(
  registry: PoolRegistry,
  driver: string,
  payload: Uint8Array | string,
  authorize?: PoolAuthorizer,
): Promise<void> {
  const known = registry.driverList().find((d) => d.name === driver);
  if (known === undefined) throw new PermissionDenied("Argument not in 'available drivers'");
  const { name, params } = parsePoolAddPayload(payload);
  const accepted = new Set(known.params.map((p) => p.name));
  if (Object.keys(params).some((k) => !accepted.has(k))) {
    throw new ProtocolError('Unexpected driver options found');
  }
  await registry.addPool(driver, name, params, authorize);
}
