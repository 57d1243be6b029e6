import { execFile } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { open, readFile, readdir, readlink, writeFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { VmmError, type BackendContext, type DomainSpec } from '@odyssey/hal';
import type { RuntimeFiles } from './runtime-files.js';

const run = promisify(execFile);

/**
 * The helper that mounts in libvirtd's namespace. From dist/ and from src/ under vitest alike,
 * the compiled one: `../dist/` of either directory is dist/.
 */
const HELPER = fileURLToPath(new URL('../dist/image-mount-helper.js', import.meta.url));

/** An image-file volume the container mounts: its root at /, its private at /rw (and /rw/home at /home). */
export interface ImageVolume {
  readonly role: 'root' | 'private';
  readonly path: string;
  readonly readOnly: boolean;
}

const EXT4_MAGIC_OFFSET = 1080;
/** The Flags column of /proc/net/unix for a listening socket (__SO_ACCEPTCON). */
const LISTENING = '00010000';
/** How much of an image must be zero for it to count as never formatted (a fresh sparse private.img). */
const BLANK_PROBE = 64 * 1024;

/** The image-file volumes of `spec` the container mounts; rejects those it cannot. */
export function imageVolumes(spec: DomainSpec): ImageVolume[] {
  const images: ImageVolume[] = [];
  for (const v of spec.volumes) {
    if ((v.role !== 'root' && v.role !== 'private') || v.format === 'dir') continue;
    if (v.format !== 'raw') {
      throw new VmmError(
        'unsupported',
        `${spec.name}: ${v.name} is ${v.format}; the lxc backend mounts raw ext4 images only`,
      );
    }
    // Handed to mount(8) as an argument: never relative, never something it could take for an option.
    if (!isAbsolute(v.path))
      throw new VmmError(
        'failed',
        `${spec.name}: ${v.name}'s path ${JSON.stringify(v.path)} is not absolute`,
      );
    if (v.role === 'root' && v.readOnly) {
      // Probed with the Debian template's root.img: "Failed to create <root>/.oldroot: Read-only file system".
      throw new VmmError(
        'unsupported',
        `${spec.name}: its root image is read-only, and libvirt_lxc must create /.oldroot in a container's root`,
      );
    }
    images.push({ role: v.role, path: v.path, readOnly: v.readOnly });
  }
  return images;
}

/** Unescapes a path field of /proc/PID/mountinfo (space, tab, newline, backslash are octal there). */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Loop-mounts a domain's image-file volumes, idmapped onto its uid range, where libvirt_lxc binds
 * them into the container (`<runtime>/lxc/<name>/mnt/<role>`), and unmounts them when it stops.
 * libvirt_lxc cannot do it itself: it opens the loop device from inside the container's user
 * namespace, and the kernel lets no user namespace but the initial one mount ext4.
 */
export class ImageMounts {
  /** The last libvirtd mount namespace found, while its process lives. */
  #ns: string | undefined;

  constructor(
    private readonly files: RuntimeFiles,
    private readonly socketPath: string,
    private readonly log: BackendContext['log'],
    /** The root tree (ODYSSEY_LXC_ROOTFS) bound read-only in place of a root image that holds no file system. */
    private readonly standInRoot?: string,
  ) {}

  /** Remembers at define what `mount` mounts at start. */
  async remember(name: string, images: readonly ImageVolume[]): Promise<void> {
    await writeFile(this.files.imagesFile(name), `${JSON.stringify(images)}\n`);
  }

  /** Mounts what `remember` kept for `name`, after unmounting what an earlier run left. */
  async mount(name: string, uidBase: number): Promise<void> {
    const images = await this.remembered(name);
    const ns = await this.libvirtdMountNs();
    await this.unmountIn(ns, await this.mountedFor(ns, name));
    const args: string[] = [];
    for (const image of images) {
      const target = this.files.imageMountDir(name, image.role);
      const home = image.role === 'private' ? 'home' : '-';
      if (image.role === 'root' && (await this.probe(image.path)).blank) {
        // A template root nothing was ever installed to (as the conformance suite's): no OS in it.
        if (!this.standInRoot) {
          throw new VmmError(
            'unsupported',
            `${name}: its root image ${image.path} holds no file system, and no ODYSSEY_LXC_ROOTFS is set to stand in`,
          );
        }
        args.push(this.standInRoot, target, 'tree', home);
        continue;
      }
      if (image.role === 'private' && !image.readOnly) await this.formatIfBlank(image.path);
      else await this.requireExt4(image.path);
      args.push(image.path, target, image.readOnly ? 'ro' : 'rw', home);
    }
    if (args.length > 0) await this.helper(ns, ['mount', String(uidBase), ...args]);
  }

  /**
   * `path` as libvirtd's mount namespace has it (through /proc/PID/root), where the images are
   * mounted: odysseyd's own namespace does not see those mounts.
   */
  async inLibvirtdNs(path: string): Promise<string> {
    const ns = await this.libvirtdMountNs();
    return `${ns.slice(0, -'ns/mnt'.length)}root${path}`;
  }

  /** `/proc/<pid>` of the libvirtd behind the socket. */
  async libvirtdProc(): Promise<string> {
    return (await this.libvirtdMountNs()).slice(0, -'/ns/mnt'.length);
  }

  /** Whether `name` has image-file volumes to mount. */
  async hasImages(name: string): Promise<boolean> {
    return (await this.remembered(name)).length > 0;
  }

  /** Unmounts every image of `name` (its loop devices go with the last mount of each). */
  async unmount(name: string): Promise<void> {
    const ns = await this.libvirtdMountNs();
    await this.unmountIn(ns, await this.mountedFor(ns, name));
  }

  /**
   * The domains that have image mounts in libvirtd's namespace. Only domains that have had image
   * files are looked for (their images.json stays while their directory does), so a host without
   * any costs nothing here.
   */
  async mountedDomains(): Promise<string[]> {
    const dirs = await readdir(this.files.domainsDir()).catch(() => [] as string[]);
    const withImages = [];
    for (const name of dirs) if (await this.hasImages(name)) withImages.push(name);
    if (withImages.length === 0) return [];
    const ns = await this.libvirtdMountNs();
    const prefix = `${this.files.domainsDir()}/`;
    const names = new Set<string>();
    for (const point of await this.mountPoints(ns)) {
      const [name, mnt] = point.slice(prefix.length).split('/');
      if (point.startsWith(prefix) && mnt === 'mnt' && name) names.add(name);
    }
    return [...names];
  }

  private async remembered(name: string): Promise<ImageVolume[]> {
    const text = await readFile(this.files.imagesFile(name), 'utf8').catch(() => '[]');
    const parsed = JSON.parse(text) as unknown;
    if (!Array.isArray(parsed)) throw new Error(`${this.files.imagesFile(name)} is not a list`);
    return parsed as ImageVolume[];
  }

  private async mountedFor(ns: string, name: string): Promise<string[]> {
    const prefix = `${this.files.domainDir(name)}/mnt/`;
    // Deepest first, so nothing is unmounted from under another mount.
    return (await this.mountPoints(ns))
      .filter((p) => p.startsWith(prefix))
      .sort()
      .reverse();
  }

  private async mountPoints(ns: string): Promise<string[]> {
    const pid = /^\/proc\/(\d+)\//.exec(ns)?.[1] ?? 'self';
    const info = await readFile(`/proc/${pid}/mountinfo`, 'utf8');
    const points = info
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((p): p is string => p !== undefined)
      .map(unescapeMountPath);
    return [...new Set(points)];
  }

  private async unmountIn(ns: string, points: readonly string[]): Promise<void> {
    if (points.length === 0) return;
    await this.helper(ns, ['unmount', ...points]);
    this.log('info', `lxc: unmounted ${points.join(' ')}`);
  }

  private async helper(ns: string, args: readonly string[]): Promise<void> {
    try {
      await run('nsenter', [`--mount=${ns}`, '--', process.execPath, HELPER, ...args], { timeout: 60_000 });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr?.trim();
      throw new VmmError('failed', `lxc image ${args[0]} ${args[1]}: ${stderr || String(error)}`, {
        cause: error,
      });
    }
  }

  private async requireExt4(path: string): Promise<void> {
    const { magic } = await this.probe(path);
    if (!magic)
      throw new VmmError(
        'unsupported',
        `${path} holds no ext4 file system, the only kind the lxc backend mounts`,
      );
  }

  /**
   * A writable image that was never written (storage makes private.img sparse, and Qubes' guest
   * formats it on first boot) gets an ext4 file system here: the container cannot make one. Any
   * other image without ext4 is refused rather than handed to another file system driver.
   */
  private async formatIfBlank(path: string): Promise<void> {
    const { magic, blank } = await this.probe(path);
    if (magic) return;
    if (!blank)
      throw new VmmError(
        'unsupported',
        `${path} holds no ext4 file system, the only kind the lxc backend mounts`,
      );
    await run('mkfs.ext4', ['-q', '-F', path], { timeout: 120_000 });
    this.log('info', `lxc: made an ext4 file system on the blank image ${path}`);
  }

  private async probe(path: string): Promise<{ magic: boolean; blank: boolean }> {
    const file = await open(path, 'r');
    try {
      const head = Buffer.alloc(BLANK_PROBE);
      const { bytesRead } = await file.read(head, 0, BLANK_PROBE, 0);
      const magic = bytesRead >= EXT4_MAGIC_OFFSET + 2 && head.readUInt16LE(EXT4_MAGIC_OFFSET) === 0xef53;
      return { magic, blank: head.subarray(0, bytesRead).every((b) => b === 0) };
    } finally {
      await file.close();
    }
  }

  /**
   * The mount namespace of the libvirtd behind the socket: the process holding the listening
   * socket's inode (/proc/net/unix), found among /proc's fds.
   */
  private async libvirtdMountNs(): Promise<string> {
    if (this.#ns && (await readlink(this.#ns).catch(() => undefined))) return this.#ns;
    this.#ns = await this.findLibvirtdMountNs();
    return this.#ns;
  }

  private async findLibvirtdMountNs(): Promise<string> {
    const table = await readFile('/proc/net/unix', 'utf8');
    const inode = table
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .find((f) => f[7] === this.socketPath && f[3] === LISTENING)?.[6];
    if (!inode) throw new VmmError('unavailable', `no process listens on ${this.socketPath}`);
    const wanted = `socket:[${inode}]`;
    // One synchronous pass (~40 ms for ~800 fds on this machine) rather than an await per fd.
    const entries = (dir: string): string[] => {
      try {
        return readdirSync(dir);
      } catch {
        return [];
      }
    };
    const target = (link: string): string => {
      try {
        return readlinkSync(link);
      } catch {
        return '';
      }
    };
    for (const pid of entries('/proc').filter((e) => /^\d+$/.test(e))) {
      if (entries(`/proc/${pid}/fd`).some((fd) => target(`/proc/${pid}/fd/${fd}`) === wanted))
        return `/proc/${pid}/ns/mnt`;
    }
    throw new VmmError('unavailable', `no process holds the socket ${this.socketPath}`);
  }
}
