import { execFile } from 'node:child_process';
import { chown, lstat, mkdir, readFile, readdir, readlink, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { VmmError } from '@odyssey/hal';

const run = promisify(execFile);

/** Where each domain's own `name=systemd` cgroup is, below libvirtd's (what a container sees). */
export const DOMAIN_CGROUPS = 'odyssey';

/** systemd's own release agent (systemd 252, the template's): sends its argument to pid 1's /run/systemd/cgroups-agent. */
const CGROUPS_AGENT = '/lib/systemd/systemd-cgroups-agent';
/** How often a stopping domain's cgroups are looked at. */
const RELEASE_POLL_MS = 500;
/** Longer than any stop job waits for (systemd's default TimeoutStopSec is 90 s), then dom0 stops telling. */
const RELEASE_WATCH_MS = 180_000;
/** One agent run: it sends one datagram. */
const AGENT_TIMEOUT_MS = 5_000;

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

  /**
   * Until the container whose init is host pid `pid` ends (or RELEASE_WATCH_MS), tells its systemd
   * of each of its cgroups that is empty, as a release agent would. systemd on a cgroup v1
   * hierarchy learns that a unit's cgroup ran empty from the kernel's release agent only, which is
   * the host's (a container cannot set it); its fallback, SIGCHLD of the processes it watched,
   * races: a stop job whose main process went before a child (odyssey-post-install's shell and
   * its qubesdb-read, killed together) was seen waiting for an empty cgroup until its 90 s
   * timeout, holding poweroff.target (README). The message is the container's own agent, run in
   * its user and mount namespaces as its root (no more than a process inside could send), with the
   * cgroup's path as the container sees it; not in its pid namespace, where systemd-shutdown would
   * wait for it (a zombie of a parent outside, seen holding a power-off for 60 s). systemd checks
   * the cgroup is empty before it acts, and an empty cgroup is told again each round while it is
   * there (a unit not yet waiting ignores it).
   */
  async releaseWhileStopping(name: string, pid: number): Promise<void> {
    const dir = await this.domainDir(name);
    if (!dir) return;
    const deadline = Date.now() + RELEASE_WATCH_MS;
    while (Date.now() < deadline && (await managerRuns(pid))) {
      for (const path of await emptyLeaves(dir, '')) {
        await run('nsenter', ['-t', String(pid), '-U', '-m', '-r', '-w', '--', CGROUPS_AGENT, path], {
          env: {},
          timeout: AGENT_TIMEOUT_MS,
          maxBuffer: 64 * 1024,
        }).catch(() => undefined);
      }
      await sleep(RELEASE_POLL_MS);
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

/**
 * Whether host pid `pid` is still a container's systemd manager: once it has exec'd
 * systemd-shutdown no stop job is left to wait, and that one waits for every process in its pid
 * namespace to end, so nothing more is sent.
 */
async function managerRuns(pid: number): Promise<boolean> {
  const [own, its, comm] = await Promise.all([
    readlink('/proc/self/ns/pid').catch(() => undefined),
    readlink(`/proc/${pid}/ns/pid`).catch(() => undefined),
    readFile(`/proc/${pid}/comm`, 'utf8').catch(() => ''),
  ]);
  return its !== undefined && its !== own && comm === 'systemd\n';
}

/** The cgroups below `dir` (paths from `dir`, as `/a/b`) with no child cgroup and no process. */
async function emptyLeaves(dir: string, path: string): Promise<string[]> {
  const entries = await readdir(join(dir, path), { withFileTypes: true }).catch(() => []);
  const children = entries.filter((e) => e.isDirectory());
  const found: string[] = [];
  for (const child of children) found.push(...(await emptyLeaves(dir, `${path}/${child.name}`)));
  if (children.length > 0 || path === '') return found;
  const procs = await readFile(join(dir, path, 'cgroup.procs'), 'utf8').catch(() => undefined);
  return procs === '' ? [path] : found;
}
