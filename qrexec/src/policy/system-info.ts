/**
 * The view of the system that policy evaluation needs, in the shape of
 * qubesd's `internal.GetSystemInfo` reply so the same JSON can be fed from a
 * file, from our daemon, or from upstream's.
 */
export interface SystemInfoDomain {
  readonly tags: readonly string[];
  readonly type: string;
  readonly template_for_dispvms: boolean;
  readonly default_dispvm?: string | null;
  readonly power_state: string;
  readonly uuid: string;
  /** The `internal` feature; upstream sends the raw feature value, so any truthy value counts. */
  readonly internal?: boolean | string | null;
  readonly icon?: string;
  readonly label?: string;
  readonly guivm?: string | null;
  readonly relayvm?: string | null;
  readonly transport_rpc?: string | null;
}

export interface SystemInfo {
  readonly domains: Readonly<Record<string, SystemInfoDomain>>;
}

export interface IndexedDomain extends SystemInfoDomain {
  readonly name: string;
}

export const DOM0_UUID = '00000000-0000-0000-0000-000000000000';

/**
 * Looks domains up by name or by `uuid:UUID`, as upstream does after it adds
 * the uuid aliases to the system info dictionary.
 */
export class DomainIndex {
  /** Real qube names, in system-info order. */
  readonly names: readonly string[];
  private readonly byKey = new Map<string, IndexedDomain>();

  constructor(info: SystemInfo) {
    const names: string[] = [];
    for (const [name, domain] of Object.entries(info.domains)) {
      const entry: IndexedDomain = { ...domain, name };
      names.push(name);
      this.byKey.set(name, entry);
    }
    for (const name of names) {
      const entry = this.byKey.get(name);
      if (entry?.uuid) this.byKey.set(`uuid:${entry.uuid}`, entry);
    }
    this.names = names;
  }

  get(key: string): IndexedDomain | undefined {
    return this.byKey.get(key);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** `uuid:X` → name, `@dispvm:uuid:X` → `@dispvm:name`; anything else unchanged (undefined if the uuid is unknown). */
  toName(token: string): string | undefined {
    if (token.startsWith('uuid:')) return this.byKey.get(token)?.name;
    if (token.startsWith('@dispvm:uuid:')) {
      const name = this.byKey.get(token.slice('@dispvm:'.length))?.name;
      return name === undefined ? undefined : `@dispvm:${name}`;
    }
    return token;
  }
}

const indexes = new WeakMap<SystemInfo, DomainIndex>();

/** The index of a system info object, built once per object (callers pass the same snapshot many times). */
export function indexSystemInfo(info: SystemInfo): DomainIndex {
  let index = indexes.get(info);
  if (!index) {
    index = new DomainIndex(info);
    indexes.set(info, index);
  }
  return index;
}

/**
 * Checks untrusted JSON (a file, a daemon reply) against the shape above and
 * returns it typed. Throws a TypeError naming the first bad field.
 */
export function parseSystemInfo(json: unknown): SystemInfo {
  if (!isObject(json) || !isObject(json['domains']))
    throw new TypeError('system info: missing "domains" object');
  for (const [name, d] of Object.entries(json['domains'])) {
    const where = `system info: domain ${JSON.stringify(name)}`;
    if (!isObject(d)) throw new TypeError(`${where} is not an object`);
    if (!Array.isArray(d['tags']) || !d['tags'].every((t) => typeof t === 'string'))
      throw new TypeError(`${where}: "tags" must be a list of strings`);
    for (const key of ['type', 'power_state', 'uuid'] as const)
      if (typeof d[key] !== 'string') throw new TypeError(`${where}: "${key}" must be a string`);
    if (typeof d['template_for_dispvms'] !== 'boolean')
      throw new TypeError(`${where}: "template_for_dispvms" must be a boolean`);
    for (const key of ['default_dispvm', 'guivm', 'relayvm', 'transport_rpc'] as const)
      if (d[key] !== undefined && d[key] !== null && typeof d[key] !== 'string')
        throw new TypeError(`${where}: "${key}" must be a string or null`);
  }
  return json as unknown as SystemInfo;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
