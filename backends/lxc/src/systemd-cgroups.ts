import { chown, lstat, mkdir, readFile, readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { VmmError } from '@odyssey/hal';

/** Where each domain's own `name=systemd` cgroup is, below libvirtd's (what a container sees). */
export const DOMAIN_CGROUPS = 'odyssey';

/**
 * The `name=systemd` cgroup (v1 hierarchy) of each domain whose root boots systemd.
 *
 * libvirt 9.0 never creates a cgroup in `name=systemd`: every container is left in libvirtd's own
 * there (the hierarchy's root here), sees that one as its `/sys/fs/cgroup/systemd`, and libvirt
 * chowns it to the container's root uid at each start. systemd puts itself in `init.scope` below
 * it, so a second systemd container gets EACCES on the first one's and exits. dom0 makes instead
 * `<libvirtd's cgroup>/odyssey/<name>`, owned by the domain's root uid; the template's init moves
 * itself into it and into a cgroup namespace rooted there before it execs systemd. dom0 takes back
 * libvirtd's cgroup after each start, so no domain uid owns a cgroup another domain lives under.
 */
export class SystemdCgroups {
  constructor(
    /** `/proc/<pid>` of the libvirtd behind the socket. */
    private readonly libvirtdProc: () => Promise<string>,
  ) {}

  /** Makes `name`'s cgroup (again, emptied of what a crash left) owned by `uidBase`, and its files. */
  async make(name: string, uidBase: number): Promise<void> {
    const dir = await this.domainDir(name);
    // No such hierarchy (a cgroup v2 host): the init finds no cgroup of its own and says so.
    if (!dir) return;
    await removeTree(dir);
    await mkdir(dir, { recursive: true });
    await chown(dir, uidBase, uidBase);
    for (const entry of await readdir(dir)) await chown(join(dir, entry), uidBase, uidBase);
  }

  /** Removes `name`'s cgroup and what its systemd made below it (all empty once it stopped). */
  async remove(name: string): Promise<void> {
    const dir = await this.domainDir(name);
    if (dir) await removeTree(dir);
  }

  /**
   * Gives libvirtd's cgroup (and its files) back to root: libvirt chowns it to the container's
   * root at each start, though the container lives in its own below it.
   */
  async reclaimLibvirtd(): Promise<void> {
    const dir = await this.libvirtdDir();
    if (!dir) return;
    for (const path of [dir, ...(await readdir(dir)).map((e) => join(dir, e))]) {
      const st = await lstat(path);
      if (st.uid !== 0 || st.gid !== 0) await chown(path, 0, 0);
    }
  }

  private async domainDir(name: string): Promise<string | undefined> {
    const dir = await this.libvirtdDir();
    return dir && join(dir, DOMAIN_CGROUPS, name);
  }

  /**
   * libvirtd's `name=systemd` cgroup, through its root (/proc/<pid>/root<mount><placement>);
   * undefined when the host has no such hierarchy.
   */
  private async libvirtdDir(): Promise<string | undefined> {
    const proc = await this.libvirtdProc();
    const mountinfo = await readFile(join(proc, 'mountinfo'), 'utf8');
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - cgroup SOURCE SUPEROPTS"
    const mount = mountinfo
      .split('\n')
      .map((line) => line.split(' '))
      .find((f) => {
        const dash = f.indexOf('-');
        return (
          dash > 0 && f[dash + 1] === 'cgroup' && (f[dash + 3] ?? '').split(',').includes('name=systemd')
        );
      });
    if (!mount?.[4]) return undefined;
    if (mount[3] !== '/')
      throw new VmmError(
        'unsupported',
        "libvirtd's name=systemd mount is a subtree of that hierarchy, not its root",
      );
    const placement = (await readFile(join(proc, 'cgroup'), 'utf8'))
      .split('\n')
      .map((line) => /^\d+:name=systemd:(\/.*)$/.exec(line)?.[1])
      .find((p) => p !== undefined);
    if (placement === undefined || placement.split('/').includes('..'))
      throw new VmmError('unsupported', 'libvirtd is in no name=systemd cgroup');
    return join(proc, 'root', unescape(mount[4]), placement);
  }
}

/** mountinfo's octal escapes (space, tab, newline, backslash). */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** rmdir of a cgroup and its children, deepest first (cgroup files cannot be unlinked); gone is fine. */
async function removeTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => undefined);
  if (!entries) return;
  for (const e of entries) if (e.isDirectory()) await removeTree(join(dir, e.name));
  await rmdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
