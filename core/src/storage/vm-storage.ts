import type { VolumeSpec } from '@odyssey/hal';
import type { PoolDirectory } from '../model/app.js';
import type { Vm } from '../model/vm.js';
import type { VmClassName } from '../model/vm-classes.js';
import type { Volume, VolumeOwner } from './driver.js';
import { KernelVolume } from './drivers/kernel.js';
import { defaultVolumeLayout } from './layout.js';
import type { LayoutVmClass } from './layout.js';
import type { PoolRegistry } from './pool-registry.js';
import { volumeConfigFromXml, volumeConfigToXml } from './volume-config.js';

/** Classes that have disks (upstream's QubesVM subclasses). */
const WITH_VOLUMES: ReadonlySet<VmClassName> = new Set(['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM']);

export interface StartedVolumes {
  readonly volumes: VolumeSpec[];
  readonly kernel?: { kernel: string; initramfs?: string };
}

/**
 * The disks of every domain: which volumes a VM owns, and the storage steps
 * of creating, starting, stopping and removing it. The pools themselves are
 * the registry's.
 */
export class VmStorage implements PoolDirectory {
  private readonly volumes = new Map<Vm, Map<string, Volume>>();

  constructor(
    readonly registry: PoolRegistry,
    private readonly stateDir: string,
  ) {}

  has(name: string): boolean {
    return this.registry.hasPool(name);
  }

  names(): string[] {
    return this.registry.poolNames();
  }

  /** Upstream: a pool named `default`, else the file pool at the state dir. */
  defaultPoolName(): string | undefined {
    if (this.registry.hasPool('default')) return 'default';
    return this.names().find((n) => {
      const c = this.registry.poolXml(n);
      return (c.driver === 'file' || c.driver === 'file-reflink') && c.dir_path === this.stateDir;
    });
  }

  static hasVolumes(vm: Vm): boolean {
    return WITH_VOLUMES.has(vm.klass);
  }

  private owner(vm: Vm): VolumeOwner {
    return {
      name: vm.name,
      dirPrefix: vm.klass === 'TemplateVM' ? 'vm-templates' : 'appvms',
      kernel: () => {
        const k = vm.props.tryGet('kernel');
        return typeof k === 'string' && k !== '' ? k : undefined;
      },
    };
  }

  /** The VM's volumes in its order (root, private, volatile, kernel). */
  of(vm: Vm): ReadonlyMap<string, Volume> {
    return this.volumes.get(vm) ?? new Map();
  }

  /**
   * The volumes of a VM read from qubes.xml at start. What an earlier daemon
   * left half-done (an import's file) is removed in the background: each
   * volume's own lock puts any call on it after that. A failure there only
   * leaves the files to the next import or start, which remove them too.
   */
  load(vm: Vm, attrs: readonly Readonly<Record<string, string>>[]): void {
    const map = new Map<string, Volume>();
    for (const a of attrs) {
      const v = this.registry.initVolume(this.owner(vm), volumeConfigFromXml(a));
      map.set(v.name, v);
      v.recover().catch(() => undefined);
    }
    this.volumes.set(vm, map);
  }

  xml(vm: Vm): Record<string, string>[] | undefined {
    const map = this.volumes.get(vm);
    return map ? [...map.values()].map((v) => volumeConfigToXml(v.config())) : undefined;
  }

  /** Creates the disks of a new VM, in the chosen pools (CreateInPool) or the defaults. */
  async create(vm: Vm, pool?: string, pools?: ReadonlyMap<string, string>): Promise<void> {
    if (!VmStorage.hasVolumes(vm)) return;
    const app = vm.app;
    const template = vm.template;
    const kernel = vm.props.tryGet('kernel');
    const configs = defaultVolumeLayout({
      vmClass: vm.klass as LayoutVmClass,
      name: vm.name,
      template: template ? [...this.of(template).values()].map((v) => v.config()) : undefined,
      ...(pool !== undefined ? { pool } : {}),
      ...(pools && pools.size > 0 ? { pools: Object.fromEntries(pools) } : {}),
      defaultPool: (volume) => String(app.props.get(`default_pool_${volume}`)),
      kernelPool: String(app.props.get('default_pool_kernel')),
      kernel: typeof kernel === 'string' && kernel !== '' ? kernel : undefined,
    });
    const map = new Map<string, Volume>();
    for (const c of configs) map.set(c.name, this.registry.initVolume(this.owner(vm), c));
    await this.registry.createVolumes(map.values());
    this.volumes.set(vm, map);
  }

  async remove(vm: Vm): Promise<void> {
    const map = this.volumes.get(vm);
    if (!map) return;
    this.volumes.delete(vm);
    try {
      await this.registry.removeVolumes(map.values());
    } finally {
      for (const v of map.values()) this.registry.forgetVolume(v);
    }
  }

  /** Prepares the disks for a start and says what the backend attaches. */
  async start(vm: Vm): Promise<StartedVolumes> {
    const vols = [...this.of(vm).values()];
    await this.registry.verifyVolumes(vols);
    await this.registry.startVolumes(vols);
    const specs: VolumeSpec[] = [];
    let kernel: StartedVolumes['kernel'];
    for (const v of vols) {
      if (v instanceof KernelVolume) {
        const files = await v.kernelFiles();
        if (files) kernel = { kernel: files.vmlinuz, initramfs: files.initramfs };
      }
      const dev = await v.blockDevice();
      if (!dev) continue;
      const role = (['root', 'private', 'volatile', 'kernel'] as const).find((r) => r === v.name);
      specs.push({
        name: v.name,
        role: role ?? 'private',
        path: dev.path,
        format: dev.format,
        readOnly: dev.readOnly,
      });
    }
    return { volumes: specs, ...(kernel ? { kernel } : {}) };
  }

  async stop(vm: Vm): Promise<void> {
    await this.registry.stopVolumes(this.of(vm).values());
  }

  /**
   * Finishes, as a stop does, the volumes a start of a halted VM left on disk (it stopped while
   * no daemon watched it). Says whether there were any.
   */
  async stopLeftovers(vm: Vm): Promise<boolean> {
    const left: Volume[] = [];
    for (const v of this.of(vm).values()) if (!v.isRunning() && (await v.hasStartLeftovers())) left.push(v);
    if (left.length === 0) return false;
    await this.registry.stopVolumes(left);
    return true;
  }
}
