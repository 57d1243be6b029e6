/**
 * Run by `ImageMounts` inside the mount namespace of the libvirtd that starts the containers
 * (`nsenter --mount`), since that is where libvirt_lxc looks for a `<filesystem type='mount'>`
 * source; a mount made in odysseyd's namespace would not be seen when libvirtd runs in a
 * private one (scripts/libvirtd-test.sh). Its own process because a multithreaded node cannot
 * setns() into a mount namespace.
 *
 *   mount UID_BASE (IMAGE TARGET ro|rw home|-)...  loop-mounts each ext4 IMAGE at its TARGET,
 *                                                  idmapped so the image's uid/gid k is the
 *                                                  host's UID_BASE + k; with `tree` for ro|rw,
 *                                                  IMAGE is a directory bound read-only instead
 *   unmount TARGET...                              unmounts everything stacked on each TARGET
 *
 * One run does all of a domain's volumes: starting node is most of what a run costs.
 *
 * The loop device is made by mount(8) with autoclear: it is detached by the kernel when the last
 * mount of its file system goes (ours here, and the container's copy when the container ends).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UID_RANGE } from './uid-ranges.js';

type Koffi = typeof import('koffi');

const AT_FDCWD = -100;
const AT_EMPTY_PATH = 0x1000;
const OPEN_TREE_CLONE = 1;
const OPEN_TREE_CLOEXEC = 0o2000000;
const MOUNT_ATTR_IDMAP = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
const MOUNT_ATTR_SIZE = 32;

interface MountApi {
  openTree(path: string): number;
  idmap(fd: number, usernsFd: number): void;
  moveTo(fd: number, target: string): void;
}

/** glibc 2.36's wrappers of the new mount API (Debian 12), through koffi. */
function mountApi(): MountApi {
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const libc = koffi.load('libc.so.6');
  koffi.struct('odyssey_mount_attr', {
    attr_set: 'uint64',
    attr_clr: 'uint64',
    propagation: 'uint64',
    userns_fd: 'uint64',
  });
  const openTree = libc.func('int open_tree(int dfd, const char *path, unsigned int flags)') as (
    dfd: number,
    path: string,
    flags: number,
  ) => number;
  const mountSetattr = libc.func(
    'int mount_setattr(int dfd, const char *path, unsigned int flags, odyssey_mount_attr *attr, size_t size)',
  ) as (dfd: number, path: string, flags: number, attr: object, size: number) => number;
  const moveMount = libc.func(
    'int move_mount(int from_dfd, const char *from_path, int to_dfd, const char *to_path, unsigned int flags)',
  ) as (fromFd: number, fromPath: string, toFd: number, toPath: string, flags: number) => number;
  const check = (what: string, result: number): number => {
    if (result < 0) throw new Error(`${what} failed: errno ${koffi.errno()}`);
    return result;
  };
  return {
    openTree: (path) =>
      check(`open_tree ${path}`, openTree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)),
    idmap: (fd, usernsFd) => {
      const attr = { attr_set: MOUNT_ATTR_IDMAP, attr_clr: 0, propagation: 0, userns_fd: usernsFd };
      check('mount_setattr(MOUNT_ATTR_IDMAP)', mountSetattr(fd, '', AT_EMPTY_PATH, attr, MOUNT_ATTR_SIZE));
    },
    moveTo: (fd, target) =>
      void check(`move_mount to ${target}`, moveMount(fd, '', AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH)),
  };
}

/**
 * An fd of a fresh user namespace whose uid and gid 0..UID_RANGE-1 are the host's uidBase
 * onwards: the container's own mapping, which the idmapped mount copies. A child made for it
 * holds the namespace until the fd is open.
 */
async function usernsFd(uidBase: number): Promise<number> {
  const holder = spawn('unshare', ['--user', 'sleep', '60'], { stdio: 'ignore' });
  try {
    const pid = holder.pid;
    if (pid === undefined) throw new Error('cannot run unshare');
    const own = readlinkSync('/proc/self/ns/user');
    // unshare(2) happens in the child before it runs sleep: wait for its namespace to differ from ours.
    for (let i = 0; readlinkSync(`/proc/${pid}/ns/user`) === own; i++) {
      if (i > 500) throw new Error('unshare --user made no user namespace within 5 s');
      await sleep(10);
    }
    const map = `0 ${uidBase} ${UID_RANGE}\n`;
    writeFileSync(`/proc/${pid}/uid_map`, map);
    writeFileSync(`/proc/${pid}/gid_map`, map);
    return openSync(`/proc/${pid}/ns/user`, 'r');
  } finally {
    holder.kill('SIGKILL');
  }
}

function isMountPoint(path: string): boolean {
  const fields = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]);
  // mountinfo escapes space, tab, newline and backslash in paths as octal.
  return fields.some(
    (p) => p?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === path,
  );
}

function unmountAll(target: string): void {
  while (isMountPoint(target)) execFileSync('umount', [target]);
}

/**
 * A root tree shared by domains, bound read-only: the flag is copied to libvirt's bind of it and
 * locked there, as the container's user namespace is less privileged. libvirt_lxc makes
 * `/.oldroot` in a root before it pivots, so it is made here while the tree is writable.
 */
function bindTree(tree: string, target: string): void {
  mkdirSync(join(tree, '.oldroot'), { recursive: true });
  mkdirSync(target, { recursive: true });
  execFileSync('mount', ['--bind', tree, target]);
  try {
    execFileSync('mount', ['-o', 'remount,bind,ro,nodev', target]);
  } catch (error) {
    unmountAll(target);
    throw error;
  }
}

function mountImage(
  api: MountApi,
  userns: number,
  image: string,
  target: string,
  readOnly: boolean,
  home: boolean,
): void {
  mkdirSync(target, { recursive: true });
  // nodev: the image's device nodes are the domain's to make, never the host's to open.
  execFileSync('mount', ['-t', 'ext4', '-o', `loop,nodev${readOnly ? ',ro' : ''}`, image, target]);
  try {
    // Made through the plain mount: owned by the image's root, the domain's root once idmapped.
    if (home && !readOnly) mkdirSync(join(target, 'home'), { recursive: true, mode: 0o755 });
    const tree = api.openTree(target);
    api.idmap(tree, userns);
    execFileSync('umount', [target]);
    api.moveTo(tree, target);
    closeSync(tree);
  } catch (error) {
    unmountAll(target);
    throw error;
  }
}

const FIELDS_PER_IMAGE = 4;

async function main(argv: readonly string[]): Promise<void> {
  const [command, ...args] = argv;
  if (command === 'unmount' && args.length > 0) {
    for (const target of args) unmountAll(target);
    return;
  }
  const [base = '', ...images] = args;
  const uidBase = Number(base);
  if (command !== 'mount' || images.length === 0 || images.length % FIELDS_PER_IMAGE !== 0) {
    throw new Error(
      `usage: mount UID_BASE (IMAGE TARGET ro|rw home|-)... | unmount TARGET... (got ${argv.join(' ')})`,
    );
  }
  if (!Number.isInteger(uidBase) || uidBase <= 0) throw new Error(`bad uid base ${base}`);
  const api = mountApi();
  const userns = await usernsFd(uidBase);
  const done: string[] = [];
  try {
    for (let i = 0; i < images.length; i += FIELDS_PER_IMAGE) {
      const [image = '', target = '', mode, home] = images.slice(i, i + FIELDS_PER_IMAGE);
      if (mode === 'tree') bindTree(image, target);
      else mountImage(api, userns, image, target, mode === 'ro', home === 'home');
      done.push(target);
    }
  } catch (error) {
    // All or nothing: a domain never starts on some of its volumes.
    for (const target of done) unmountAll(target);
    throw error;
  } finally {
    closeSync(userns);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
