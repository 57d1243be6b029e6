import { QubesException } from '../model/errors.js';
import type { VolumeConfig } from './driver.js';

const GiB = 1024 ** 3;
/** Upstream defaults (qubes.config.defaults). */
export const ROOT_IMG_SIZE = 10 * GiB;
export const PRIVATE_IMG_SIZE = 2 * GiB;

export type LayoutVmClass = 'TemplateVM' | 'StandaloneVM' | 'AppVM' | 'DispVM';

/** The four volumes every QubesVM has, in the order `admin.vm.volume.List` reports them. */
export const STANDARD_VOLUMES = ['root', 'private', 'volatile', 'kernel'] as const;

export interface LayoutRequest {
  readonly vmClass: LayoutVmClass;
  readonly name: string;
  /**
   * The template's current volume configs, for AppVM (its TemplateVM) and
   * DispVM (its disposable template, an AppVM or StandaloneVM).
   */
  readonly template?: readonly VolumeConfig[];
  /** `admin.vm.CreateInPool`'s `pool=`: every writable, non-snapshot volume. */
  readonly pool?: string;
  /** `admin.vm.CreateInPool`'s `pool:<vol>=`: per volume. */
  readonly pools?: Readonly<Record<string, string>>;
  /** `default_pool_<volume>` (root, private, volatile), for volumes no pool was chosen for. */
  readonly defaultPool: (volume: string) => string;
  /** `default_pool_kernel`. */
  readonly kernelPool: string;
  /** The VM's kernel version, the kernel volume's vid; none means no dom0 kernel. */
  readonly kernel?: string;
}

type Draft = {
  name: string;
  pool?: string;
  size?: number;
  rw: boolean;
  saveOnStop: boolean;
  snapOnStart: boolean;
  source?: string;
  ephemeral?: boolean;
  /** Snapshot volumes take source, pool and size from this template volume. */
  fromTemplate?: boolean;
};

function baseDrafts(vmClass: LayoutVmClass): Draft[] {
  const kernel: Draft = { name: 'kernel', rw: false, saveOnStop: false, snapOnStart: false };
  switch (vmClass) {
    case 'TemplateVM':
    case 'StandaloneVM':
      return [
        { name: 'root', rw: true, saveOnStop: true, snapOnStart: false, size: ROOT_IMG_SIZE },
        { name: 'private', rw: true, saveOnStop: true, snapOnStart: false, size: PRIVATE_IMG_SIZE },
        { name: 'volatile', rw: true, saveOnStop: false, snapOnStart: false, size: ROOT_IMG_SIZE },
        kernel,
      ];
    case 'AppVM':
      return [
        { name: 'root', rw: true, saveOnStop: false, snapOnStart: true, fromTemplate: true },
        { name: 'private', rw: true, saveOnStop: true, snapOnStart: false, size: PRIVATE_IMG_SIZE },
        { name: 'volatile', rw: true, saveOnStop: false, snapOnStart: false, size: ROOT_IMG_SIZE },
        kernel,
      ];
    case 'DispVM':
      return [
        { name: 'root', rw: true, saveOnStop: false, snapOnStart: true, fromTemplate: true },
        { name: 'private', rw: true, saveOnStop: false, snapOnStart: true, fromTemplate: true },
        // A disposable keeps everything it writes in volatile: room for root and private changes.
        {
          name: 'volatile',
          rw: true,
          saveOnStop: false,
          snapOnStart: false,
          size: ROOT_IMG_SIZE + PRIVATE_IMG_SIZE,
        },
        kernel,
      ];
  }
}

/**
 * The volume configs a new VM gets (upstream's per-class `volume_config`
 * after `create_on_disk` patched the pools): vids `appvms/<vm>/<vol>` or
 * `vm-templates/<vm>/<vol>`, snapshot volumes pointing at the template's
 * data, kernel from the kernel pool. revisions_to_keep is left to each
 * volume's pool, whose driver has its own rule for it (upstream's init_volume).
 */
export function defaultVolumeLayout(req: LayoutRequest): VolumeConfig[] {
  if (req.pool !== undefined && req.pools !== undefined) {
    throw new QubesException('You can not pass pool & pools parameter at same time');
  }
  const template = new Map((req.template ?? []).map((c) => [c.name, c]));
  const needsTemplate = req.vmClass === 'AppVM' || req.vmClass === 'DispVM';
  if (needsTemplate && req.template === undefined) {
    throw new QubesException(`${req.vmClass} ${req.name} needs its template's volumes`);
  }
  const drafts = baseDrafts(req.vmClass);
  const known = new Set(drafts.map((d) => d.name));
  // Extra volumes of the template are inherited as they are (minus their vid).
  if (needsTemplate) {
    for (const c of template.values()) {
      if (known.has(c.name)) continue;
      drafts.push({
        name: c.name,
        rw: c.rw,
        saveOnStop: c.saveOnStop,
        snapOnStart: c.snapOnStart,
        ...(c.pool !== undefined ? { pool: c.pool } : {}),
        ...(c.size !== undefined ? { size: c.size } : {}),
        ...(c.source !== undefined ? { source: c.source } : {}),
      });
    }
  }

  const dirPrefix = req.vmClass === 'TemplateVM' ? 'vm-templates' : 'appvms';
  return drafts.map((d): VolumeConfig => {
    const tpl = template.get(d.name);
    if (d.fromTemplate) {
      if (tpl === undefined) throw new QubesException(`Template of ${req.name} has no ${d.name} volume`);
      // The template's volume may itself be a snapshot (DispVM of an AppVM): follow it to the origin.
      d.source = tpl.snapOnStart && tpl.source !== undefined ? tpl.source : tpl.vid;
      d.pool = tpl.pool;
      if (tpl.size !== undefined) d.size = tpl.size;
    } else if (req.vmClass === 'DispVM' && tpl !== undefined && d.pool === undefined) {
      // A disposable's volatile volume lives where its disposable template's does.
      d.pool = tpl.pool;
    }
    if (req.vmClass === 'DispVM' && tpl !== undefined) {
      d.rw = tpl.rw;
      if (tpl.ephemeral !== undefined) d.ephemeral = tpl.ephemeral;
    }

    const requested = req.pools?.[d.name];
    if (req.pool !== undefined && !d.snapOnStart && d.rw) {
      d.pool = req.pool;
    } else if (requested !== undefined) {
      if (d.snapOnStart) {
        // Upstream's text, its missing space after the comma and its trailing space included.
        throw new QubesException(
          `Snapshot volume ${d.name} must be in the same pool as its origin ` +
            `(${d.name} volume of template),cannot move to pool ${requested} `,
        );
      }
      d.pool = requested;
    }
    const pool = d.pool ?? (d.name === 'kernel' ? req.kernelPool : req.defaultPool(d.name));

    const isKernel = d.name === 'kernel' && !d.rw;
    const vid = isKernel ? req.kernel : `${dirPrefix}/${req.name}/${d.name}`;
    return {
      name: d.name,
      pool,
      ...(vid !== undefined ? { vid } : {}),
      rw: d.rw,
      saveOnStop: d.saveOnStop,
      snapOnStart: d.snapOnStart,
      ...(d.ephemeral !== undefined ? { ephemeral: d.ephemeral } : {}),
      ...(d.size !== undefined ? { size: d.size } : {}),
      ...(d.source !== undefined ? { source: d.source } : {}),
    };
  });
}
