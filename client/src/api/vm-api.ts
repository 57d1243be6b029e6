import type { Caller } from './caller.js';
import { lines } from './caller.js';
import {
  PermissionDenied,
  ProtocolError,
  QubesDaemonAccessError,
  QubesDaemonCommunicationError,
} from '../errors.js';
import { parsePropertyLines, type PropertyValue } from '../properties.js';

export type PowerState =
  'Halted' | 'Transient' | 'Running' | 'Paused' | 'Suspended' | 'Halting' | 'Dying' | 'Crashed' | 'NA';

/** Upstream's notion of "running": started in any way, paused and suspended included. */
export function isRunning(state: PowerState): boolean {
  return state !== 'Halted' && state !== 'NA';
}

export interface VmInfo {
  name: string;
  klass: string;
  state: PowerState;
  /** Absent from daemons older than the `uuid=` field. */
  uuid?: string;
}

export interface VmCurrentState {
  /** KiB */
  mem: number;
  /** KiB */
  memStaticMax: number;
  cputime: number;
  powerState: PowerState;
}

export interface CreateVmOptions {
  klass: string;
  name: string;
  label: string;
  template?: string;
  /** One pool for every volume (`CreateInPool`, `pool=`). */
  pool?: string;
  /** Pool per volume name (`CreateInPool`, `pool:<volume>=`); exclusive with `pool`. */
  pools?: Record<string, string>;
}

export interface ShutdownOptions {
  force?: boolean;
  wait?: boolean;
}

/** Parses `admin.vm.List`: `<name> class=<C> state=<S> uuid=<U>` per line. */
export function parseVmList(body: Buffer | string): VmInfo[] {
  return lines(body).map((line) => {
    const [name, ...fields] = line.split(' ');
    const attrs = new Map(fields.map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]));
    const klass = attrs.get('class');
    const state = attrs.get('state');
    if (!name || klass === undefined || state === undefined) {
      throw new QubesDaemonCommunicationError(`Invalid VM list line received: ${line}`);
    }
    const uuid = attrs.get('uuid');
    return { name, klass, state: state as PowerState, ...(uuid === undefined ? {} : { uuid }) };
  });
}

/** A qube and, unless the policy keeps them from the caller, its properties. */
export interface VmWithProperties {
  vm: VmInfo;
  properties?: Map<string, PropertyValue>;
}

/**
 * Parses `admin.odyssey.vm.ListWithProperties`: per qube its `admin.vm.List` line, its
 * `admin.vm.property.GetAll` lines (none when refused), then an empty line. With `wanted`, only those
 * properties are parsed (`qvm ls` shows a few of some sixty).
 */
export function parseVmListWithProperties(
  body: Buffer | string,
  wanted?: ReadonlySet<string>,
): VmWithProperties[] {
  const result: VmWithProperties[] = [];
  const all = lines(body);
  for (let i = 0; i < all.length;) {
    const [vm] = parseVmList(all[i] as string);
    let end = i + 1;
    while (end < all.length && all[end] !== '') end++;
    if (!vm || end === all.length) {
      throw new QubesDaemonCommunicationError('Invalid VM list with properties received');
    }
    result.push(
      end === i + 1 ? { vm } : { vm, properties: parsePropertyLines(all.slice(i + 1, end), wanted) },
    );
    i = end + 1;
  }
  return result;
}

/** Lifecycle and inventory of qubes. */
export class VmApi {
  constructor(private readonly call: Caller) {}

  /** All qubes visible to the caller (dest dom0), or just `dest` when it names a qube. */
  async list(dest = 'dom0'): Promise<VmInfo[]> {
    return parseVmList(await this.call('admin.vm.List', dest));
  }

  /**
   * `list()` and every qube's properties in one call (odysseyd's own method). Undefined where the call is
   * refused (upstream's qubesd has no such method, or the policy does not grant it): ask per qube then.
   */
  async listWithProperties(wanted?: ReadonlySet<string>): Promise<VmWithProperties[] | undefined> {
    try {
      return parseVmListWithProperties(
        await this.call('admin.odyssey.vm.ListWithProperties', 'dom0'),
        wanted,
      );
    } catch (err) {
      if (
        err instanceof QubesDaemonAccessError ||
        err instanceof ProtocolError ||
        err instanceof PermissionDenied
      )
        return undefined;
      throw err;
    }
  }

  async listClasses(): Promise<string[]> {
    return lines(await this.call('admin.vmclass.List', 'dom0'));
  }

  async create(options: CreateVmOptions): Promise<void> {
    if (options.pool !== undefined && options.pools !== undefined) {
      throw new TypeError('only one of pool and pools can be given');
    }
    let payload = `name=${options.name} label=${options.label}`;
    let method = 'admin.vm.Create.';
    if (options.pool !== undefined) {
      payload += ` pool=${options.pool}`;
      method = 'admin.vm.CreateInPool.';
    }
    if (options.pools !== undefined) {
      for (const volume of Object.keys(options.pools).sort()) {
        payload += ` pool:${volume}=${options.pools[volume]}`;
      }
      method = 'admin.vm.CreateInPool.';
    }
    await this.call(method + options.klass, 'dom0', options.template ?? '', payload);
  }

  /**
   * A new disposable from `dest` (a disposable template, or dom0 for the caller's default_dispvm).
   * Returns its name, or `uuid:<uuid>` when `uuid` is asked for.
   */
  async createDisposable(dest = 'dom0', options: { uuid?: boolean } = {}): Promise<string> {
    return (await this.call('admin.vm.CreateDisposable', dest, '', options.uuid ? 'uuid' : '')).toString(
      'utf8',
    );
  }

  async remove(vm: string): Promise<void> {
    await this.call('admin.vm.Remove', vm);
  }

  async start(vm: string): Promise<void> {
    await this.call('admin.vm.Start', vm);
  }

  async shutdown(vm: string, options: ShutdownOptions = {}): Promise<void> {
    const arg = [options.force ? 'force' : '', options.wait ? 'wait' : ''].filter(Boolean).join('+');
    await this.call('admin.vm.Shutdown', vm, arg);
  }

  async kill(vm: string): Promise<void> {
    await this.call('admin.vm.Kill', vm);
  }

  async pause(vm: string): Promise<void> {
    await this.call('admin.vm.Pause', vm);
  }

  async unpause(vm: string): Promise<void> {
    await this.call('admin.vm.Unpause', vm);
  }

  async suspend(vm: string): Promise<void> {
    await this.call('admin.vm.Suspend', vm);
  }

  async resume(vm: string): Promise<void> {
    await this.call('admin.vm.Resume', vm);
  }

  async currentState(vm: string): Promise<VmCurrentState> {
    const fields = new Map(
      (await this.call('admin.vm.CurrentState', vm))
        .toString('utf8')
        .split(' ')
        .map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]),
    );
    const powerState = fields.get('power_state');
    if (powerState === undefined) throw new QubesDaemonCommunicationError('Invalid current state received');
    return {
      mem: Number(fields.get('mem') ?? 0),
      memStaticMax: Number(fields.get('mem_static_max') ?? 0),
      cputime: Number(fields.get('cputime') ?? 0),
      powerState: powerState as PowerState,
    };
  }

  async getNotes(vm: string): Promise<string> {
    return (await this.call('admin.vm.notes.Get', vm)).toString('utf8');
  }

  async setNotes(vm: string, notes: string): Promise<void> {
    await this.call('admin.vm.notes.Set', vm, '', notes);
  }
}
