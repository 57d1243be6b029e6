import { pyRepr, QubesValueError, StoragePoolException } from '../model/errors.js';
import type { VolumeConfig } from './driver.js';
import { parseBool, parseIntParam, parseIntStrict, pyBool } from './params.js';

/**
 * Attributes of qubes.xml's `<volume .../>`, in upstream's order:
 * name pool vid revisions_to_keep rw save_on_stop snap_on_start [ephemeral] [size] [source].
 * `size` is omitted when 0 (kernel volumes), `ephemeral` unless set explicitly.
 */
export function volumeConfigToXml(c: VolumeConfig): Record<string, string> {
  const out: Record<string, string> = { name: c.name, pool: c.pool };
  if (c.vid !== undefined) out['vid'] = c.vid;
  out['revisions_to_keep'] = String(c.revisionsToKeep ?? 0);
  out['rw'] = pyBool(c.rw);
  out['save_on_stop'] = pyBool(c.saveOnStop);
  out['snap_on_start'] = pyBool(c.snapOnStart);
  if (c.ephemeral !== undefined) out['ephemeral'] = pyBool(c.ephemeral);
  if (c.size) out['size'] = String(c.size);
  if (c.source !== undefined) out['source'] = c.source;
  return out;
}

function required(attrs: Readonly<Record<string, string>>, key: string): string {
  const v = attrs[key];
  if (v === undefined) throw new QubesValueError(`volume element lacks attribute ${key}`);
  return v;
}

/** Inverse of volumeConfigToXml; accepts any boolean literal upstream accepts. */
export function volumeConfigFromXml(attrs: Readonly<Record<string, string>>): VolumeConfig {
  const opt = (k: string): string | undefined => attrs[k];
  const bool = (k: string): boolean => {
    const v = opt(k);
    return v === undefined ? false : parseBool(v);
  };
  const size = opt('size');
  const rtk = opt('revisions_to_keep');
  const eph = opt('ephemeral');
  const vid = opt('vid');
  const source = opt('source');
  return {
    name: required(attrs, 'name'),
    pool: required(attrs, 'pool'),
    ...(vid !== undefined ? { vid } : {}),
    ...(rtk !== undefined ? { revisionsToKeep: parseIntParam(rtk, 'revisions_to_keep') } : {}),
    rw: bool('rw'),
    saveOnStop: bool('save_on_stop'),
    snapOnStart: bool('snap_on_start'),
    ...(eph !== undefined ? { ephemeral: parseBool(eph) } : {}),
    ...(size !== undefined ? { size: parseIntStrict(size, 'size') } : {}),
    ...(source ? { source } : {}),
  };
}

/** Upstream's Volume constructor rule, for every driver: a snapshot needs a source, and a source means a snapshot. */
export function checkSnapSource(name: string, config: VolumeConfig): void {
  if (config.snapOnStart && config.source === undefined) {
    throw new StoragePoolException(`snap_on_start specified on ${pyRepr(name)} but no volume source set`);
  }
  if (!config.snapOnStart && config.source !== undefined) {
    throw new StoragePoolException(`source specified on ${pyRepr(name)} but no snap_on_start set`);
  }
}
