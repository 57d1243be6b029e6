import { existsSync } from 'node:fs';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainSpec } from '@odyssey/hal';
import { LxcVmm } from '../src/lxc-vmm.js';
import { LxcRig, agentPid, inContainerSh, run, whyNoContainers } from './support/containers.js';

const HELPER = fileURLToPath(new URL('../dist/image-mount-helper.js', import.meta.url));

function whyNoImages(): string | undefined {
  const noContainers = whyNoContainers(['lz4', 'cpio', 'nsenter', 'unshare', 'mkfs.ext4', 'losetup']);
  if (noContainers) return noContainers;
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control: the kernel has no loop devices';
  if (!existsSync(HELPER)) return `no ${HELPER}: run npx tsc -b first`;
  return undefined;
}
const skip = whyNoImages();
if (skip) console.warn(`[lxc image volume tests] SKIPPED: ${skip}`);

const spec = (root: string, priv: string, name = 'lximg', n = 1): DomainSpec => ({
  name,
  uuid: `7a0c0de0-0000-4000-8000-0000000000a${n}`,
  memoryMiB: 128,
  maxMemoryMiB: 0,
  vcpus: 1,
  virtMode: 'hvm',
  volumes: [
    { name: 'root', role: 'root', path: root, format: 'raw', readOnly: false },
    { name: 'private', role: 'private', path: priv, format: 'raw', readOnly: false },
  ],
  debug: false,
});

/** Loop devices backed by a file under `dir`, as losetup lists them. */
async function loopsUnder(dir: string): Promise<string[]> {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout.split('\n').filter((line) => line.includes(dir));
}

/** Mount points under `dir` in the mount namespace of `pid`. */
async function mountsUnder(pid: number, dir: string): Promise<string[]> {
  const info = await readFile(`/proc/${pid}/mountinfo`, 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(dir));
}

describe.skipIf(skip)('lxc domain whose root and private volumes are ext4 image files', () => {
  let rig: LxcRig;
  let dir = '';
  let vmm: LxcVmm;
  let libvirtdPid = 0;

  beforeAll(async () => {
    rig = await LxcRig.start('lxc-images-');
    ({ vmm, runtimeDir: dir } = rig);
    // The root image: the container root tree plus a marker, as a template's root.img holds its tree.
    const root = join(dir, 'root.img');
    await writeFile(root, '');
    await truncate(root, 256 * 1024 * 1024);
    await run('mkfs.ext4', ['-q', '-F', '-d', rig.rootDir, root], { timeout: 120_000 });
    await writeFile(join(dir, 'marker'), 'from root.img\n');
    await run('debugfs', ['-w', '-R', `write ${join(dir, 'marker')} /etc/odyssey-image-marker`, root]);
    // The private image as core's storage makes it: sparse and never formatted.
    const priv = join(dir, 'private.img');
    await writeFile(priv, '');
    await truncate(priv, 64 * 1024 * 1024);
    libvirtdPid = Number((await readFile(join(rig.daemon.dir, 'libvirtd.pid'), 'utf8')).trim());
    await vmm.define(spec(root, priv));
    await vmm.start('lximg');
  }, 300_000);

  afterAll(() => rig?.stop(['lximg', 'lxblank']), 60_000);

  it('boots from the root image and reads a file of it inside the container, owned by the domain root', async () => {
    expect((await vmm.state('lximg')).state).toBe('Running');
    expect(
      await inContainerSh('lximg', 'cat /etc/odyssey-image-marker; stat -c %u:%g /etc/odyssey-image-marker'),
    ).toBe('from root.img\n0:0\n');
    // On the host the same file belongs to the domain's uid range: the mount is idmapped.
    const base = Number(await readFile(vmm.files.uidBaseFile('lximg'), 'utf8'));
    const pid = await agentPid('lximg');
    expect(await run('stat', ['-c', '%u:%g', `/proc/${pid}/root/etc/odyssey-image-marker`])).toHaveProperty(
      'stdout',
      `${base}:${base}\n`,
    );
    // Writable (an AppVM's root is its own copy, made by storage at each start).
    expect(await inContainerSh('lximg', 'echo w >/etc/written && cat /etc/written')).toBe('w\n');
  }, 60_000);

  it('formats the blank private image and mounts it at /rw, its home/ at /home, kept in the image', async () => {
    const out = await inContainerSh(
      'lximg',
      'echo kept >/home/note && cat /rw/home/note && stat -c %u /home && grep -c " /rw " /proc/self/mountinfo',
    );
    expect(out).toBe('kept\n0\n1\n');
  }, 60_000);

  it('leaves no mount and no loop device after a kill, and the private image keeps what was written', async () => {
    expect(await loopsUnder(dir)).toHaveLength(2);
    expect(await mountsUnder(libvirtdPid, dir)).toHaveLength(2);
    await vmm.kill('lximg');
    expect((await vmm.state('lximg')).state).toBe('Halted');
    expect(await mountsUnder(libvirtdPid, dir)).toEqual([]);
    // The kernel detaches an autoclear loop device once the container's copy of the mount is gone too.
    for (let i = 0; i < 100 && (await loopsUnder(dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await loopsUnder(dir)).toEqual([]);
    const { stdout } = await run('debugfs', ['-R', 'cat /home/note', join(dir, 'private.img')]);
    expect(stdout).toBe('kept\n');
  }, 60_000);

  it('mounts again on the next start and unmounts after a shutdown', async () => {
    await vmm.start('lximg');
    expect(await inContainerSh('lximg', 'cat /home/note /etc/odyssey-image-marker')).toBe(
      'kept\nfrom root.img\n',
    );
    await vmm.shutdown('lximg', { timeoutMs: 30_000 });
    expect(await mountsUnder(libvirtdPid, dir)).toEqual([]);
    for (let i = 0; i < 100 && (await loopsUnder(dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await loopsUnder(dir)).toEqual([]);
  }, 90_000);

  it('refuses a second start while running; at open, clears the mounts of a domain that stopped unwatched', async () => {
    await vmm.start('lximg');
    await expect(vmm.start('lximg')).rejects.toMatchObject({ code: 'invalid-state' });
    expect(await mountsUnder(libvirtdPid, dir)).toHaveLength(2);
    await vmm.close();
    // Destroyed behind the backend's back: nobody is there to see it stop.
    await run('virsh', ['-c', `lxc:///system?socket=${rig.daemon.socket}`, 'destroy', 'lximg']);
    expect(await mountsUnder(libvirtdPid, dir)).toHaveLength(2);
    vmm = rig.vmm = rig.newVmm();
    await vmm.open();
    expect(await mountsUnder(libvirtdPid, dir)).toEqual([]);
    for (let i = 0; i < 100 && (await loopsUnder(dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await loopsUnder(dir)).toEqual([]);
  }, 90_000);

  it("clears the mounts when the container's init dies on its own (a crash: only libvirt's event tells)", async () => {
    await vmm.start('lximg');
    const status = await readFile(`/proc/${await agentPid('lximg')}/status`, 'utf8');
    const init = Number(/^PPid:\s*(\d+)$/m.exec(status)?.[1]);
    process.kill(init, 'SIGKILL');
    for (let i = 0; i < 200 && (await mountsUnder(libvirtdPid, dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(await mountsUnder(libvirtdPid, dir)).toEqual([]);
    expect((await vmm.state('lximg')).state).toBe('Halted');
  }, 90_000);

  it('binds the root tree read-only in place of a root image nothing was installed to', async () => {
    // As the conformance suite's template: a root.img storage made sparse and nothing wrote.
    const [root, priv] = [join(dir, 'blank-root.img'), join(dir, 'blank-private.img')];
    for (const image of [root, priv]) {
      await writeFile(image, '');
      await truncate(image, 64 * 1024 * 1024);
    }
    await vmm.define(spec(root, priv, 'lxblank', 2));
    await vmm.start('lxblank');
    const out = await inContainerSh(
      'lxblank',
      'test -x /sbin/odyssey-lxc-init && echo init; touch /x 2>&1 || true; echo p >/rw/p && cat /rw/p',
    );
    expect(out).toMatch(/^init\n.*Read-only file system\np\n$/s);
    // The root image itself was left as it was: still nothing in it.
    expect((await readFile(root)).subarray(0, 4096).every((b) => b === 0)).toBe(true);
    await vmm.kill('lxblank');
    expect(await mountsUnder(libvirtdPid, dir)).toEqual([]);
  }, 90_000);
});
