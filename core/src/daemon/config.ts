import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';

import { LOG_LEVELS } from './log.js';
import type { LogLevel } from './log.js';

/** What odysseyd runs with, after defaults, the config file and the command line. */
export interface DaemonSettings {
  readonly backend: string;
  /** libvirt's URI for libvirt backends; unset leaves the backend's own default. */
  readonly libvirtUri?: string;
  readonly socket: string;
  readonly internalSocket?: string;
  readonly stateDir: string;
  readonly policyDirs: readonly string[];
  readonly legacyPolicyDir: string;
  readonly backupProfileDir?: string;
  /** Where dom0's service.* features become flag files (upstream: /var/run/qubes-service); unset: none. */
  readonly dom0ServicesDir?: string;
  readonly qrexecServices?: string;
  readonly logLevel: LogLevel;
  /** The admin socket's group (upstream: qubes); left alone when no such group exists. */
  readonly socketGroup: string;
  readonly socketMode: number;
}

export type SettingsLayer = { -readonly [K in keyof DaemonSettings]?: DaemonSettings[K] };

export const DEFAULT_CONFIG_FILE = '/etc/odyssey/odysseyd.conf';

export const DEFAULTS: DaemonSettings = {
  backend: 'kvm',
  socket: '/var/run/qubesd.sock',
  stateDir: '/var/lib/qubes',
  policyDirs: ['/run/qubes/policy.d', '/etc/qubes/policy.d'],
  legacyPolicyDir: '/etc/qubes-rpc/policy',
  logLevel: 'info',
  socketGroup: 'qubes',
  socketMode: 0o660,
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** A value's parser: returns the setting, or throws a plain message that the caller places. */
type Parse<T> = (value: string) => T;

const path: Parse<string> = (value) => {
  if (!isAbsolute(value)) throw new Error(`"${value}" is not an absolute path`);
  return value;
};

const word: Parse<string> = (value) => {
  if (!/^[A-Za-z0-9@._/-]+$/.test(value)) throw new Error(`"${value}" is not a name`);
  return value;
};

const uri: Parse<string> = (value) => {
  if (!/^[a-z][a-z0-9+.-]*:\/\/\S*$/.test(value)) throw new Error(`"${value}" is not a libvirt URI`);
  return value;
};

export const logLevel: Parse<LogLevel> = (value) => {
  const level = LOG_LEVELS.find((l) => l === value);
  if (!level) throw new Error(`"${value}" is not one of ${LOG_LEVELS.join(', ')}`);
  return level;
};

/** Octal, as chmod takes it: 660 or 0660. */
export const fileMode: Parse<number> = (value) => {
  if (!/^0?[0-7]{3}$/.test(value)) throw new Error(`"${value}" is not an octal mode like 0660`);
  return parseInt(value, 8);
};

const groupName: Parse<string> = (value) => {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(value)) throw new Error(`"${value}" is not a group name`);
  return value;
};

/** One entry per key of the file: the setting it fills and how its value is read. */
interface Key {
  readonly field: keyof SettingsLayer;
  readonly parse: Parse<unknown>;
  readonly repeats?: true;
}

const KEYS: Readonly<Record<string, Key>> = {
  backend: { field: 'backend', parse: word },
  'libvirt-uri': { field: 'libvirtUri', parse: uri },
  socket: { field: 'socket', parse: path },
  'internal-socket': { field: 'internalSocket', parse: path },
  'state-dir': { field: 'stateDir', parse: path },
  'policy-dir': { field: 'policyDirs', parse: path, repeats: true },
  'legacy-policy-dir': { field: 'legacyPolicyDir', parse: path },
  'backup-profile-dir': { field: 'backupProfileDir', parse: path },
  'dom0-services-dir': { field: 'dom0ServicesDir', parse: path },
  'log-level': { field: 'logLevel', parse: logLevel },
  'socket-group': { field: 'socketGroup', parse: groupName },
  'socket-mode': { field: 'socketMode', parse: fileMode },
};

/** The keys a config file may hold, for the README and error messages. */
export const CONFIG_KEYS: readonly string[] = Object.keys(KEYS);

/**
 * Reads `key = value` lines; `#` starts a comment line. `policy-dir` may repeat
 * (in order, first wins per file name); any other key once. Errors name file:line.
 */
export function parseConfig(text: string, file: string): SettingsLayer {
  const layer: Record<string, unknown> = {};
  const seen = new Set<string>();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `${file}:${index + 1}`;
    const eq = line.indexOf('=');
    if (eq < 0) throw new ConfigError(`${at}: expected "key = value", got "${line}"`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    const spec = KEYS[key];
    if (!spec) throw new ConfigError(`${at}: unknown key "${key}" (known: ${CONFIG_KEYS.join(', ')})`);
    if (value === '') throw new ConfigError(`${at}: ${key} has no value`);
    if (seen.has(key) && !spec.repeats) throw new ConfigError(`${at}: ${key} is set twice`);
    seen.add(key);
    let parsed: unknown;
    try {
      parsed = spec.parse(value);
    } catch (e) {
      throw new ConfigError(`${at}: ${key}: ${(e as Error).message}`);
    }
    layer[spec.field] = spec.repeats
      ? [...((layer[spec.field] as string[] | undefined) ?? []), parsed]
      : parsed;
  });
  return layer as SettingsLayer;
}

/**
 * The config file's settings: `file` when given (it must exist), else the
 * default file if there is one, else none.
 */
export async function readConfig(file: string | undefined): Promise<SettingsLayer> {
  const name = file ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await readFile(name, 'utf8');
  } catch (e) {
    if (file === undefined && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read config file ${name}: ${(e as Error).message}`);
  }
  return parseConfig(text, name);
}

/** Later layers win: defaults, then the config file, then the command line. */
export function resolveSettings(...layers: SettingsLayer[]): DaemonSettings {
  const settings: SettingsLayer = { ...DEFAULTS };
  for (const layer of layers)
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) Object.assign(settings, { [k]: v });
  return settings as DaemonSettings;
}
