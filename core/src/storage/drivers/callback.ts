import { readFileSync } from 'node:fs';

import { StoragePoolException } from '../../model/errors.js';
import type { PyInt } from '../../model/validate.js';
import { describeFailure, runCommand } from '../../run-command.js';
import type {
  BlockDevice,
  Pool,
  PoolDriver,
  Revision,
  Volume,
  VolumeConfig,
  VolumeOwner,
} from '../driver.js';
import { Mutex } from '../lock.js';
import { pyBool } from '../params.js';

export const CALLBACK_DRIVER = 'callback';
/** Upstream's fixed location of the hook configuration, one entry per conf_id. */
export const CALLBACK_CONFIG_PATH = '/etc/qubes_callback.json';

type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** One conf_id's entry: the wrapped driver, its arguments and the hook commands by event name. */
type CallbackConfig = Readonly<Record<string, Json>>;

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Python's shlex.quote: safe words stay bare, anything else is single-quoted. */
export function shellQuote(s: string): string {
  if (s === '') return "''";
  if (/^[\w@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'"'"'`)}'`;
}

/** Python's json.dumps(value, sort_keys=True, indent=2): the config as upstream hands it to `cmd`. */
export function pythonJsonDumps(value: Json): string {
  const sorted = (v: Json): Json => {
    if (Array.isArray(v)) return v.map(sorted);
    if (isObject(v))
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sorted(v[k] as Json)]),
      );
    return v;
  };
  // ensure_ascii: Python escapes every non-ASCII character.
  return JSON.stringify(sorted(value), null, 2).replace(
    /[\u0080-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** How a JSON bdriver_args value reads as the string parameter our drivers take (Python's str()). */
function paramString(v: Json): string {
  if (typeof v === 'boolean') return pyBool(v);
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/**
 * Runs a hook through bash as upstream does; its stdout is kept for signal_back (its first MiB:
 * a hook that prints without end must not fill the daemon's memory), a failure carries the hook's
 * exit status and the end of its stderr.
 */
async function runHook(command: string): Promise<string> {
  const result = await runCommand('/bin/bash', ['-c', command]).catch((e: unknown) => {
    throw new StoragePoolException(e instanceof Error ? e.message : String(e));
  });
  if (result.code !== 0) throw new StoragePoolException(describeFailure(result, `Command '${command}'`));
  return result.stdout;
}

/**
 * A pool of another driver (`bdriver`) whose operations run user-configured
 * commands before or after them: upstream's qubes.storage.callback, used to
 * mount, decrypt or log storage on demand. `pre_sinit` (or the generic
 * `cmd`) runs once, before the first use after each daemon start.
 */
export class CallbackPool implements Pool {
  readonly driver = CALLBACK_DRIVER;
  private readonly conf: CallbackConfig;
  private readonly bdriver: string;
  /** The config as the generic `cmd` receives it. */
  private readonly confText: string;
  private requiresInit: boolean;
  private readonly initLock = new Mutex();
  private readonly wrappers = new WeakMap<Volume, CallbackVolume>();
  readonly impl: Pool;

  constructor(
    readonly name: string,
    readonly confId: string,
    configPath: string,
    backends: () => readonly PoolDriver[],
  ) {
    let all: unknown;
    try {
      all = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new StoragePoolException(
        `Cannot read ${configPath}: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (!isObject(all))
      throw new StoragePoolException(`The file ${configPath} is supposed to define a dict.`);
    const conf = Object.hasOwn(all, confId) ? all[confId] : undefined;
    if (!isObject(conf)) {
      throw new StoragePoolException(
        `The specified conf_id ${confId} could not be found inside ${configPath}.`,
      );
    }
    const bdriver = conf['bdriver'];
    if (typeof bdriver !== 'string') {
      throw new StoragePoolException(`Missing bdriver for the conf_id ${confId} inside ${configPath}.`);
    }
    const backend = backends().find((d) => d.name === bdriver);
    if (backend === undefined)
      throw new StoragePoolException(`The driver ${bdriver} was not found on your system.`);
    const args = conf['bdriver_args'] ?? {};
    if (!isObject(args))
      throw new StoragePoolException(`bdriver_args of the conf_id ${confId} must be a dict.`);
    this.conf = conf;
    this.bdriver = bdriver;
    this.confText = pythonJsonDumps(conf);
    const sinit = this.hookCommand('pre_sinit') ?? this.hookCommand('cmd');
    this.requiresInit = sinit !== undefined && sinit !== '-';
    this.impl = backend.create(
      name,
      Object.fromEntries(Object.entries(args).map(([k, v]) => [k, paramString(v)])),
    );
  }

  get dirPath(): string | undefined {
    return this.requiresInit ? undefined : this.impl.dirPath;
  }

  get revisionsToKeep(): PyInt {
    return this.impl.revisionsToKeep;
  }

  get ephemeralVolatile(): boolean {
    return this.impl.ephemeralVolatile;
  }

  setRevisionsToKeep(value: PyInt): void {
    this.impl.setRevisionsToKeep(value);
  }

  setEphemeralVolatile(value: boolean): void {
    this.impl.setEphemeralVolatile(value);
  }

  config(): Record<string, string> {
    return { name: this.name, driver: CALLBACK_DRIVER, conf_id: this.confId };
  }

  /** Setup makes the storage usable by itself, so pre_sinit does not run before it. */
  async setup(): Promise<void> {
    await this.ensureInitialized(false);
    await this.callback('pre_setup');
    await this.impl.setup();
  }

  async destroy(): Promise<void> {
    await this.ensureInitialized();
    await this.impl.destroy();
    await this.callback('post_destroy');
  }

  initVolume(owner: VolumeOwner, config: VolumeConfig): Volume {
    return this.wrap(this.impl.initVolume(owner, config));
  }

  forgetVolume(volume: Volume): void {
    this.impl.forgetVolume(volume instanceof CallbackVolume ? volume.impl : volume);
  }

  async listVolumes(): Promise<Volume[]> {
    return (await this.impl.listVolumes()).map((v) => this.wrap(v));
  }

  async getVolume(vid: string): Promise<Volume | undefined> {
    const v = await this.impl.getVolume(vid);
    return v === undefined ? undefined : this.wrap(v);
  }

  async size(): Promise<number | undefined> {
    return this.requiresInit ? undefined : this.impl.size();
  }

  async usage(): Promise<number | undefined> {
    return this.requiresInit ? undefined : this.impl.usage();
  }

  async usageDetails(): Promise<Record<string, number>> {
    return this.requiresInit ? {} : this.impl.usageDetails();
  }

  /** Whether pre_sinit still has to run (the storage may not be there yet). */
  get uninitialized(): boolean {
    return this.requiresInit;
  }

  /** Runs pre_sinit once; concurrent first uses wait for the same run. */
  ensureInitialized(runHookCommand = true): Promise<void> {
    if (!this.requiresInit) return Promise.resolve();
    return this.initLock.run(async () => {
      if (!this.requiresInit) return;
      if (runHookCommand) await this.callback('pre_sinit');
      this.requiresInit = false;
    });
  }

  /**
   * Runs the event's own command with no arguments, else the generic `cmd`
   * with `<pool> <bdriver> <event> <conf_id> <config json> [args...]`; `-` skips.
   */
  async callback(event: string, args: readonly string[] = []): Promise<void> {
    let command = this.hookCommand(event);
    let argv: string[] = [];
    if (command === undefined) {
      command = this.hookCommand('cmd');
      argv = [this.name, this.bdriver, event, this.confId, this.confText, ...args];
    }
    if (command === undefined || command === '-') return;
    const stdout = await runHook([command, argv.map(shellQuote).join(' ')].filter(Boolean).join(' '));
    if (this.conf['signal_back'] === true) {
      for (const line of stdout.split('\n')) {
        // The storage behind the pool came back (e.g. remounted): set the wrapped pool up again.
        if (line === 'SIGNAL_setup') await this.impl.setup();
      }
    }
  }

  private hookCommand(event: string): string | undefined {
    const c = this.conf[event];
    return typeof c === 'string' && c !== '' ? c : undefined;
  }

  private wrap(volume: Volume): CallbackVolume {
    let w = this.wrappers.get(volume);
    if (w === undefined) {
      w = new CallbackVolume(this, volume);
      this.wrappers.set(volume, w);
    }
    return w;
  }
}

/** A volume of the wrapped pool, with the pool's hooks around its operations. */
export class CallbackVolume implements Volume {
  constructor(
    readonly pool: CallbackPool,
    readonly impl: Volume,
  ) {}

  get name(): string {
    return this.impl.name;
  }
  get vid(): string {
    return this.impl.vid;
  }
  get rw(): boolean {
    return this.impl.rw;
  }
  get saveOnStop(): boolean {
    return this.impl.saveOnStop;
  }
  get snapOnStart(): boolean {
    return this.impl.snapOnStart;
  }
  get source(): string | undefined {
    return this.impl.source;
  }
  get revisionsToKeep(): PyInt {
    return this.impl.revisionsToKeep;
  }
  get ephemeral(): boolean {
    return this.impl.ephemeral;
  }
  get path(): string | undefined {
    return this.impl.path;
  }

  setRw(rw: boolean): void {
    this.impl.setRw(rw);
  }
  setRevisionsToKeep(value: PyInt): void {
    this.impl.setRevisionsToKeep(value);
  }
  setEphemeral(value: boolean): void {
    this.impl.setEphemeral(value);
  }

  size(): Promise<number> {
    return this.impl.size();
  }
  usage(): Promise<number> {
    return this.impl.usage();
  }
  async isDirty(): Promise<boolean> {
    return this.pool.uninitialized ? false : this.impl.isDirty();
  }
  async isOutdated(): Promise<boolean> {
    return this.pool.uninitialized ? false : this.impl.isOutdated();
  }
  isRunning(): boolean {
    return this.impl.isRunning();
  }
  /** Like isDirty: storage that pre_sinit has not made usable yet is not looked at. */
  async hasStartLeftovers(): Promise<boolean> {
    return this.pool.uninitialized ? false : this.impl.hasStartLeftovers();
  }
  revisions(): Promise<Revision[]> {
    return this.impl.revisions();
  }
  config(): VolumeConfig {
    return this.impl.config();
  }
  recover(): Promise<void> {
    return this.impl.recover();
  }

  async create(): Promise<void> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_create');
    await this.impl.create();
    await this.hook('post_volume_create');
  }

  async remove(): Promise<void> {
    await this.pool.ensureInitialized();
    await this.impl.remove();
    await this.hook('post_volume_remove');
  }

  async resize(size: number): Promise<void> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_resize', String(size));
    await this.impl.resize(size);
  }

  async start(): Promise<void> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_start');
    await this.impl.start();
    await this.hook('post_volume_start');
  }

  async stop(): Promise<void> {
    await this.pool.ensureInitialized();
    await this.impl.stop();
    await this.hook('post_volume_stop');
  }

  async verify(): Promise<void> {
    await this.pool.ensureInitialized();
    await this.impl.verify();
  }

  async revert(revisionId: string): Promise<void> {
    await this.pool.ensureInitialized();
    await this.impl.revert(revisionId);
  }

  async importBegin(size?: number): Promise<{ path: string; size: number }> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_import_data', String(size ?? (await this.impl.size())));
    return this.impl.importBegin(size);
  }

  async importEnd(success: boolean): Promise<void> {
    await this.pool.ensureInitialized();
    await this.impl.importEnd(success);
    await this.hook('post_volume_import_data_end', pyBool(success));
  }

  async importVolume(src: Volume): Promise<void> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_import', src.vid);
    await this.impl.importVolume(src);
    await this.hook('post_volume_import', src.vid);
  }

  async exportPath(): Promise<string> {
    await this.pool.ensureInitialized();
    await this.hook('pre_volume_export');
    return this.impl.exportPath();
  }

  async blockDevice(): Promise<BlockDevice | undefined> {
    return this.pool.uninitialized ? undefined : this.impl.blockDevice();
  }

  /** Volume events get `<volume name> <vid> <source vid or None>` before their own arguments. */
  private hook(event: string, ...args: string[]): Promise<void> {
    return this.pool.callback(event, [this.name, this.vid, this.source ?? 'None', ...args]);
  }
}

export interface CallbackDriverOptions {
  /** Where the conf_id entries are read from; upstream's fixed path unless a test gives its own. */
  readonly configPath?: string;
  /** The drivers a conf_id's `bdriver` may name. */
  readonly backends: () => readonly PoolDriver[];
}

export function createCallbackDriver(opts: CallbackDriverOptions): PoolDriver {
  const configPath = opts.configPath ?? CALLBACK_CONFIG_PATH;
  return {
    name: CALLBACK_DRIVER,
    params: [{ name: 'conf_id', required: true }],
    create: (name, params) => {
      const confId = params['conf_id'];
      if (confId === undefined) throw new StoragePoolException('callback pool requires conf_id');
      return new CallbackPool(name, confId, configPath, opts.backends);
    },
  };
}
