import { lstatSync } from 'node:fs';
import { access, chmod, chown, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import {
  VmmError,
  supported,
  unsupported,
  type BackendContext,
  type DomainSpec,
  type VmmCapabilities,
} from '@odyssey/hal';
import { ShutdownFlags, type Libvirt } from '@odyssey/libvirt';
import {
  runtimeDirNameProblem,
  type DriverFlags,
  type LibvirtFlavour,
  type StopReason,
} from '@odyssey/libvirt-hal';
import { domainXml, privateHome } from './domain-xml.js';
import { ImageMounts, imageVolumes } from './image-mounts.js';
import { rootBootsSystemd } from './root-kind.js';
import { RuntimeFiles } from './runtime-files.js';
import { SlirpUplinks } from './slirp-uplinks.js';
import { SystemdCgroups } from './systemd-cgroups.js';
import { uidBaseFor } from './uid-ranges.js';
import { VchanRelay } from './vchan-relay.js';
import { containerInitPid } from './veth-links.js';

export interface LxcFlavourOptions extends BackendContext {
  /** Root tree of domains without a root volume that is a directory. */
  readonly rootDir?: string;
  /** libvirtd's socket: image-file volumes are mounted in the mount namespace of the process behind it. */
  readonly libvirtdSocket: string;
}

export const LXC_CAPABILITIES: VmmCapabilities = {
  name: 'lxc',
  isolation: 'container',
  guestImages: ['odyssey-rootfs-lxc'],
  // Each container has its own libvirt_lxc controller under libvirtd: closing our connection leaves it.
  domainsOnClose: 'survive',
  // No guest kernel: a container runs on the host's kernel in no virtualisation mode.
  virtModes: [],
  // libvirt freezes the container's cgroup.
  pause: supported,
  suspend: unsupported("libvirt's LXC driver cannot save a container's memory to disk"),
  stats: supported,
  blockDevices: unsupported('block device attach/detach is not implemented by the lxc backend'),
  pciDevices: unsupported('a container shares the host kernel: it cannot be given PCI devices'),
  usbDevices: unsupported('USB passthrough is not implemented by the lxc backend'),
  // Each domain sees only its own vchan directory; dom0 joins a server's socket to its peer's (vchan-relay.ts).
  vmToVmVchan: supported,
  // The domain XML gives each container a pty console (its init's stdout and stderr), which
  // LibvirtVmm.consolePath reads back from the live XML.
  console: supported,
  // Links are veth pairs between the two containers' network namespaces (veth-links.ts); a netvm
  // without netvm gets an uplink from slirp4netns, as QEMU's user-mode network (slirp-uplinks.ts).
  network: supported,
};

/**
 * SIGRTMIN+4 (glibc's SIGRTMIN is 34: the kernel's 32 and 33 are its own), which systemd as pid 1
 * handles by starting poweroff.target (systemd(1), "Signals"). Signals from an ancestor pid
 * namespace reach a namespace's init only when it handles them: an init that is not yet systemd
 * ignores it.
 */
const SYSTEMD_POWEROFF_SIGNAL = 34 + 4;

const FLAGS: DriverFlags = {
  // SIGTERM to the container's init, which stops the agent and ends (the busybox root; a systemd
  // root is sent its own power-off signal: powerOff).
  shutdown: ShutdownFlags.SIGNAL,
  undefine: 0,
  forceBoot: false,
};

/**
 * libvirt's LXC driver as Odyssey uses it: one container per domain in its own user namespace,
 * its vchan directory the only host path it sees besides the read-only root tree.
 */
export class LxcFlavour implements LibvirtFlavour {
  readonly files: RuntimeFiles;
  readonly flags = FLAGS;
  #libvirt: Libvirt | undefined;
  readonly #relay: VchanRelay;
  readonly #images: ImageMounts;
  readonly #uplinks: SlirpUplinks;
  readonly #cgroups: SystemdCgroups;
  /** Per domain, the mount or unmount in progress: a start's mounts and a stop's unmounts never interleave. */
  readonly #imageOps = new Map<string, Promise<void>>();
  /** The spec each domain was last defined with: a start redefines it once its root image is mounted. */
  readonly #specs = new Map<string, DomainSpec>();

  constructor(private readonly options: LxcFlavourOptions) {
    this.files = new RuntimeFiles(options.runtimeDir);
    this.#uplinks = new SlirpUplinks(options.log);
    this.#images = new ImageMounts(this.files, options.libvirtdSocket, options.log, options.rootDir);
    this.#cgroups = new SystemdCgroups(() => this.#images.libvirtdProc());
    this.#relay = new VchanRelay({
      files: this.files,
      idOf: async (name) => {
        const dom = await this.#libvirt?.domains.lookupByName(name).catch(() => undefined);
        return dom && dom.id > 0 ? dom.id : undefined;
      },
      nameOf: async (id) => (await this.#libvirt?.domains.lookupById(id).catch(() => undefined))?.name,
      log: options.log,
    });
  }

  capabilities(): VmmCapabilities {
    return LXC_CAPABILITIES;
  }

  nameProblem(name: string): string | undefined {
    return runtimeDirNameProblem(name);
  }

  async afterOpen(libvirt: Libvirt): Promise<void> {
    this.#libvirt = libvirt;
    await mkdir(this.files.domainsDir(), { recursive: true });
    await this.letContainersTraverse(this.files.domainsDir());
    await this.#relay.watchExisting();
    // Image mounts of domains that stopped while no backend watched (or were undefined meanwhile).
    // Not finding libvirtd's namespace only matters to domains with image files: their start says so.
    const mounted = await this.#images.mountedDomains().catch((error: unknown) => {
      this.options.log('warn', `lxc: cannot look for leftover image mounts: ${String(error)}`);
      return [];
    });
    for (const name of mounted) await this.clearImages(name);
  }

  async beforeStart(name: string): Promise<void> {
    // The last run's mark, whatever the domain made of it (recursive: it may have left a directory).
    await rm(this.files.crashMark(name), { recursive: true, force: true });
    await this.mountImages(name);
    // Known once the root is mounted: a systemd root gets its own name=systemd cgroup (systemd-cgroups.ts).
    if (await hasFile(this.files.systemdFile(name)))
      await this.#cgroups.make(name, await uidBaseFor(this.files, name));
  }

  /**
   * After any start: libvirt gave libvirtd's name=systemd cgroup, where every container but a
   * systemd one stays, to the container's root; root takes it back.
   */
  async afterStart(): Promise<void> {
    await this.#cgroups.reclaimLibvirtd();
  }

  private async mountImages(name: string): Promise<void> {
    if (!(await this.#images.hasImages(name))) return;
    // Its images are mounted and in use: a second ext4 mount of the same file would corrupt it.
    if (await this.isRunning(name))
      throw new VmmError('invalid-state', `start ${name}: the domain is already running`);
    const uidBase = await uidBaseFor(this.files, name);
    await this.serialised(name, () => this.#images.mount(name, uidBase));
    // What boots in a root image is known only now that it is mounted: the definition follows it.
    const spec = this.#specs.get(name);
    if (spec && this.#libvirt && imageVolumes(spec).some((v) => v.role === 'root')) {
      await this.#libvirt.domains.defineXML(await this.xmlOf(spec, uidBase));
    }
  }

  /**
   * A systemd root is sent SIGRTMIN+4 at its init, systemd's own "power off" signal (what
   * `machinectl poweroff` sends): libvirt's SIGNAL is SIGTERM, which systemd takes for a re-exec,
   * and its INITCTL writes /run/initctl, which reaches systemd only through socket-activated
   * systemd-initctl.service and the manager's bus. Either way its stop jobs then need dom0 to
   * tell it of emptied cgroups (releaseWhileStopping). The busybox init keeps libvirt's SIGTERM (false).
   */
  async powerOff(name: string): Promise<boolean> {
    if (!(await hasFile(this.files.systemdFile(name)))) return false;
    const pid = await this.initPid(name);
    // Stopped meanwhile: nothing to ask, and the shutdown's wait sees it stopped.
    if (pid === undefined) return true;
    try {
      process.kill(pid, SYSTEMD_POWEROFF_SIGNAL);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
    // Its stop jobs wait for cgroups to run empty, which its systemd may not hear of (systemd-cgroups.ts).
    void this.#cgroups.releaseWhileStopping(name, pid).catch((error: unknown) => {
      this.options.log(
        'warn',
        `lxc: telling ${name}'s systemd of its empty cgroups failed: ${String(error)}`,
      );
    });
    return true;
  }

  /**
   * libvirt's LXC driver reports every end of a container's init as a shutdown (all but SIGHUP's,
   * a reboot); the busybox root's init marks an agent that ended on its own with a failure. Only a
   * regular file counts: the domain owns the directory and could make the name anything.
   */
  stopReason(name: string, reported: StopReason): StopReason {
    if (reported !== 'shutdown') return reported;
    try {
      return lstatSync(this.files.crashMark(name)).isFile() ? 'crashed' : reported;
    } catch {
      return reported;
    }
  }

  async afterStop(name: string): Promise<void> {
    // A late report of an earlier run's end leaves the uplink of the run now going alone.
    await this.#uplinks.stop(name, await this.initPid(name));
    if (await this.#images.hasImages(name)) await this.clearImages(name);
    if ((await hasFile(this.files.systemdFile(name))) && !(await this.isRunning(name)))
      await this.#cgroups.remove(name);
  }

  /**
   * Gives the running `name` its uplink when it was defined with one (after its start, and at open
   * for a domain that kept running while no backend served its uplink).
   */
  async startUplink(name: string): Promise<void> {
    if (!(await hasFile(this.files.uplinkFile(name)))) return;
    const pid = await this.initPid(name);
    if (pid === undefined)
      throw new VmmError('invalid-state', `uplink of ${name}: the domain is not running`);
    await this.#uplinks.start(name, pid);
  }

  /** The uplinks of every running domain defined with one: those of a backend before this one ended with it. */
  async startUplinks(): Promise<void> {
    const names = await readdir(this.files.domainsDir()).catch(() => []);
    for (const name of names) {
      if (!(await this.isRunning(name))) continue;
      await this.startUplink(name).catch((error: unknown) => {
        this.options.log('warn', `lxc: cannot give ${name} its uplink again: ${String(error)}`);
      });
    }
  }

  private async initPid(name: string): Promise<number | undefined> {
    const dom = await this.#libvirt?.domains.lookupByName(name).catch(() => undefined);
    return dom && dom.id > 0 ? containerInitPid(dom.id) : undefined;
  }

  private async clearImages(name: string): Promise<void> {
    await this.serialised(name, async () => {
      // A late report of an earlier run's end: the domain runs again, on these mounts.
      if (!(await this.isRunning(name))) await this.#images.unmount(name);
    });
  }

  private async isRunning(name: string): Promise<boolean> {
    const dom = await this.#libvirt?.domains.lookupByName(name).catch(() => undefined);
    return dom !== undefined && dom.id > 0;
  }

  private serialised(name: string, op: () => Promise<void>): Promise<void> {
    const next = (this.#imageOps.get(name) ?? Promise.resolve()).catch(() => undefined).then(op);
    this.#imageOps.set(name, next);
    const forget = (): void => {
      if (this.#imageOps.get(name) === next) this.#imageOps.delete(name);
    };
    next.then(forget, forget);
    return next;
  }

  /**
   * Stops relaying domain-to-domain vchans (joined pairs are closed) and serving uplinks: the
   * domains run on, their uplinks come back at the next open (startUplinks).
   */
  async close(): Promise<void> {
    this.#relay.close();
    await this.#uplinks.stopAll();
  }

  async domainXml(spec: DomainSpec): Promise<string> {
    const rootDir = this.options.rootDir;
    const images = imageVolumes(spec);
    const hasRoot =
      spec.volumes.some((v) => v.role === 'root' && v.format === 'dir') ||
      images.some((v) => v.role === 'root');
    if (!hasRoot && !rootDir) {
      throw new VmmError(
        'unsupported',
        `${spec.name} has no root directory and no ODYSSEY_LXC_ROOTFS is set (backends/lxc/scripts/build-rootfs.sh)`,
      );
    }
    if (rootDir) await stat(rootDir);
    // Refused rather than a netvm silently cut off from the outside.
    if (spec.network?.uplink) await this.#uplinks.probe();
    await mkdir(this.files.domainDir(spec.name), { recursive: true });
    if (spec.network?.uplink) await writeFile(this.files.uplinkFile(spec.name), '');
    else await rm(this.files.uplinkFile(spec.name), { force: true });
    await chmod(this.files.domainDir(spec.name), 0o711);
    const uidBase = await uidBaseFor(this.files, spec.name);
    const vchanDir = this.files.vchanDir(spec.name);
    await mkdir(vchanDir, { recursive: true });
    // The domain's root owns it; dom0 gets in as root. No other uid, so no other domain, does.
    await chown(vchanDir, uidBase, uidBase);
    await chmod(vchanDir, 0o700);
    await this.#relay.watch(spec.name);
    await this.ownPrivate(spec, uidBase);
    await this.#images.remember(spec.name, images);
    for (const v of images) await mkdir(this.files.imageMountDir(spec.name, v.role), { recursive: true });
    this.#specs.set(spec.name, spec);
    return this.xmlOf(spec, uidBase);
  }

  /**
   * The XML of `spec` for the root as it is now: a directory root (or the root tree) is probed
   * as it is; a root image only while mounted (between beforeStart and the stop), so at define it
   * is taken for the busybox kind and beforeStart redefines it. Records which it is for powerOff.
   */
  private async xmlOf(spec: DomainSpec, uidBase: number): Promise<string> {
    const images = imageVolumes(spec);
    const imageDirs = Object.fromEntries(
      images.map((v) => [v.role, this.files.imageMountDir(spec.name, v.role)]),
    );
    const dirRoot = spec.volumes.find((v) => v.role === 'root' && v.format === 'dir')?.path;
    const rootImage = imageDirs['root'];
    // An image root is mounted in libvirtd's namespace only; not found there, it is taken as not mounted.
    const tree = rootImage
      ? await this.#images.inLibvirtdNs(rootImage).catch(() => undefined)
      : (dirRoot ?? this.options.rootDir);
    const systemd = tree !== undefined && (await rootBootsSystemd(tree));
    if (systemd) await writeFile(this.files.systemdFile(spec.name), '');
    else await rm(this.files.systemdFile(spec.name), { force: true });
    const rootDir = this.options.rootDir ?? '';
    const vchanDir = this.files.vchanDir(spec.name);
    return domainXml({ spec, rootDir, vchanDir, uidBase, imageDirs, systemd });
  }

  /**
   * A private volume that is a directory is the domain's own: its top and its home/ (created when
   * missing, bound at /home) belong to the domain's root, so they are writable inside. What is
   * below keeps its owners.
   */
  private async ownPrivate(spec: DomainSpec, uidBase: number): Promise<void> {
    const priv = spec.volumes.find((v) => v.role === 'private' && v.format === 'dir');
    if (!priv || priv.readOnly) return;
    await mkdir(privateHome(priv.path), { recursive: true });
    for (const dir of [priv.path, privateHome(priv.path)]) await chown(dir, uidBase, uidBase);
  }

  /**
   * libvirt_lxc checks and mounts a domain's vchan dir with the credentials of the container's
   * root, an unprivileged host uid: every directory above it must let others search it (x, not
   * r: nothing in them becomes listable). odysseyd's state dir is 0770, so this widens it to 0771,
   * and says so.
   */
  private async letContainersTraverse(dir: string): Promise<void> {
    for (let d = dir; d !== dirname(d); d = dirname(d)) {
      const { mode } = await stat(d);
      if ((mode & 0o001) !== 0) continue;
      await chmod(d, (mode & 0o7777) | 0o001);
      this.options.log(
        'info',
        `lxc: made ${d} searchable by others (o+x) so containers reach their vchan dirs`,
      );
    }
  }

  async afterUndefine(name: string): Promise<void> {
    this.#relay.forget(name);
    await this.#uplinks.stop(name, await this.initPid(name));
    this.#specs.delete(name);
    if (await this.#images.hasImages(name)) await this.serialised(name, () => this.#images.unmount(name));
    await rm(this.files.domainDir(name), { recursive: true, force: true });
  }
}

async function hasFile(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
