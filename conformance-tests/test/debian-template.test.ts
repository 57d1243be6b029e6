import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { AdminClient } from '@odyssey/client';

import {
  buildDebianTemplate,
  installDebianTemplate,
  templateBuildProblem,
  type TemplateBuild,
} from '../src/debian-template.js';
import { imageGuests, type Guests } from '../src/guests.js';
import { startPrivateLibvirtd } from '../src/kvm-setup.js';
import { startDaemon, type RunningDaemon } from '../src/odysseyd.js';

// The Debian 12 template end to end on the KVM backend (QEMU/TCG without /dev/kvm): built with
// mmdebstrap (cached by its inputs under /var/cache/odyssey/templates), installed with
// `qvm template install`, an AppVM of it booted and entered through qrexec. Prints the build times
// and the AppVM's start → qrexec ready against a bare libvirt boot of the same disks.

const execFileP = promisify(execFile);
const problem = await templateBuildProblem();
const libvirtMissing = (await execFileP('sh', ['-c', 'command -v libvirtd && command -v virsh']).then(
  () => false,
  () => true,
))
  ? 'libvirtd or virsh is not installed'
  : undefined;
const skip = problem ?? libvirtMissing;
if (skip) console.log(`[template] skipped: ${skip}`);

const VM = 'tpl-work';
const MEMORY_MIB = 512;
const VCPUS = 2;
/** A guest boot under TCG on a loaded two-core machine: generous, as it only bounds a hang. */
const BOOT_DEADLINE_MS = 10 * 60_000;
const MARKER = 'ODYSSEY-QREXEC-READY';

let libvirtd: Awaited<ReturnType<typeof startPrivateLibvirtd>> | undefined;
let daemon: RunningDaemon | undefined;
let guests: Guests;
let firstBuild: TemplateBuild;
let cachedBuild: TemplateBuild;
let installSeconds: number;

/** The daemon beforeAll started (the tests only run once it did). */
function odysseyd(): RunningDaemon {
  if (!daemon) throw new Error('odysseyd did not start');
  return daemon;
}

async function poll<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + BOOT_DEADLINE_MS;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${BOOT_DEADLINE_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** A shell script run in the guest through qubes.VMShell; fails with its stderr on a non-zero exit. */
async function shell(script: string): Promise<string> {
  const done = await guests.dom0Call(VM, 'qubes.VMShell', `${script}\nexit $?\n`);
  if (done.code !== 0) throw new Error(`in ${VM}: ${script}: exit ${done.code}: ${done.stderr}`);
  return done.stdout;
}

/** Starts the qube and waits until a qrexec call into it succeeds; returns the seconds that took. */
async function startToQrexec(client: AdminClient): Promise<number> {
  const t0 = performance.now();
  await client.vms.start(VM);
  await poll('qrexec in the guest', async () =>
    (await guests.dom0Call(VM, 'qubes.VMShell', 'true\nexit 0\n')).code === 0 ? true : undefined,
  );
  return (performance.now() - t0) / 1000;
}

async function stopQube(client: AdminClient): Promise<void> {
  await client.vms.shutdown(VM, { wait: true });
  await poll('halted', async () =>
    (await client.vms.list()).find((v) => v.name === VM)?.state === 'Halted' ? true : undefined,
  );
}

describe.skipIf(skip !== undefined)('Debian 12 template on KVM', () => {
  beforeAll(async () => {
    firstBuild = await buildDebianTemplate();
    cachedBuild = await buildDebianTemplate();
    libvirtd = await startPrivateLibvirtd();
    daemon = await startDaemon({
      backend: 'kvm',
      env: libvirtd.env,
      // QEMU runs as libvirt's user and must reach the volumes (run-odysseyd.sh makes it 0711 too).
      prepare: (stateDir) => mkdir(stateDir, { mode: 0o711 }).then(() => undefined),
    });
    guests = imageGuests(daemon.stateDir);
    installSeconds = await installDebianTemplate(daemon.socket);
    console.log(
      `[template] build: first run ${firstBuild.seconds.toFixed(1)} s, cached ${cachedBuild.seconds.toFixed(1)} s; ` +
        `qvm template install (cached build + import + kernel) ${installSeconds.toFixed(1)} s`,
    );
  }, 60 * 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await libvirtd?.stop();
  }, 120_000);

  it('caches the build by its inputs: a second run prints the same image', () => {
    expect(cachedBuild.out).toEqual(firstBuild.out);
    expect(firstBuild.out['kernel_version']).toMatch(/-cloud-amd64$/);
  });

  it('installs the TemplateVM with its kernel as default_kernel', async () => {
    const client = odysseyd().client;
    const vms = await client.vms.list();
    expect(vms.find((v) => v.name === 'debian-12')?.klass).toBe('TemplateVM');
    const kernel = (await client.globalProperties.get('default_kernel')).value;
    expect(kernel).toBe(`${firstBuild.out['kernel_version']}-debian-12`);
    const root = await client.volumes.info('debian-12', 'root');
    expect(root.size).toBe(String((await stat(firstBuild.out['root'] ?? '')).size));
  });

  it(
    'boots an AppVM: Debian 12, vcpus and memory as set, /home persists, root changes vanish',
    async () => {
      const client = odysseyd().client;
      await client.vms.create({ klass: 'AppVM', name: VM, label: 'red', template: 'debian-12' });
      await client.vmProperties(VM).set('memory', String(MEMORY_MIB));
      await client.vmProperties(VM).set('maxmem', '0');
      await client.vmProperties(VM).set('vcpus', String(VCPUS));
      // Start answers once the agent connects; a loaded TCG host can take longer than upstream's 60 s.
      await client.vmProperties(VM).set('qrexec_timeout', String(BOOT_DEADLINE_MS / 1000));
      const first = await startToQrexec(client);
      const osRelease = await shell('cat /etc/os-release');
      expect(osRelease).toMatch(/^ID=debian$/m);
      expect(osRelease).toMatch(/^VERSION_ID="12"$/m);
      expect((await shell('nproc')).trim()).toBe(String(VCPUS));
      // The host is named after the qube (QubesDB /name) and resolves locally, as upstream's.
      expect(await shell('hostname; getent hosts "$(hostname)" | cut -d" " -f1')).toBe(`${VM}\n127.0.1.1\n`);
      const memTotalKiB = Number(/MemTotal:\s+(\d+) kB/.exec(await shell('cat /proc/meminfo'))?.[1]);
      // The kernel keeps some memory for itself: MemTotal is what is left of the guest's RAM.
      expect(memTotalKiB).toBeLessThanOrEqual(MEMORY_MIB * 1024);
      expect(memTotalKiB).toBeGreaterThan((MEMORY_MIB - 128) * 1024);
      expect(
        await shell('findmnt -n -o SOURCE /rw; findmnt -n -o SOURCE /home; swapon --show=NAME --noheadings'),
      ).toBe('/dev/vdb\n/dev/vdb[/home]\n/dev/vdc\n');
      await shell(
        // Calls run as the qube's default user, as upstream's: root's files are written through sudo.
        "echo kept-in-private >/home/user/persist && sudo sh -c 'echo gone-with-root >/etc/odyssey-root-change' && sync",
      );
      await stopQube(client);
      const second = await startToQrexec(client);
      expect(await shell('cat /home/user/persist')).toBe('kept-in-private\n');
      expect(await shell('test -e /etc/odyssey-root-change && echo present || echo absent')).toBe('absent\n');
      console.log(
        `[template] AppVM start → qrexec ready: ${first.toFixed(1)} s (first, formats private), ${second.toFixed(1)} s`,
      );
      await client.vms.kill(VM);
      await poll('halted', async () =>
        (await client.vms.list()).find((v) => v.name === VM)?.state === 'Halted' ? true : undefined,
      );

      // The same disks booted by libvirt alone: the template's root, a copy of the qube's private, a
      // new volatile; same kernel, initramfs, command line, memory and vcpus.
      const bare = join(odysseyd().stateDir, 'bare');
      await mkdir(bare, { recursive: true });
      await copyFile(
        join(odysseyd().stateDir, 'vm-templates', 'debian-12', 'root.img'),
        join(bare, 'root.img'),
      );
      await copyFile(join(odysseyd().stateDir, 'appvms', VM, 'private.img'), join(bare, 'private.img'));
      await writeFile(join(bare, 'volatile.img'), '');
      await truncate(join(bare, 'volatile.img'), 1024 ** 3);
      const kdir = join(odysseyd().stateDir, 'vm-kernels', `${firstBuild.out['kernel_version']}-debian-12`);
      const consoleLog = join(bare, 'console.log');
      const disk = (file: string, dev: string) =>
        `<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${join(bare, file)}'/><target dev='${dev}' bus='virtio'/></disk>`;
      // The domain type the backend's probe chose for its own guests (kvm or qemu, TCG).
      const accel = JSON.parse(
        await readFile(join(odysseyd().stateDir, 'run', 'accel-probe.json'), 'utf8'),
      ) as {
        type: string;
      };
      const xml = `<domain type='${accel.type}'>
<name>${VM}-bare</name><memory unit='MiB'>${MEMORY_MIB}</memory><vcpu>${VCPUS}</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>${join(kdir, 'vmlinuz')}</kernel><initrd>${join(kdir, 'initramfs')}</initrd>
<cmdline>${(await client.vmProperties(VM).get('kernelopts')).value} console=ttyS0 panic=-1 root=/dev/vda</cmdline></os><features><acpi/></features>
<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
<devices>${disk('root.img', 'vda')}${disk('private.img', 'vdb')}${disk('volatile.img', 'vdc')}
<serial type='file'><source path='${consoleLog}' append='off'/><target port='0'/></serial>
<channel type='unix'><source mode='bind' path='${join(bare, 'vchan.sock')}'/><target type='virtio' name='org.odyssey.vchan.0'/></channel>
<memballoon model='none'/></devices></domain>`;
      await writeFile(join(bare, 'domain.xml'), xml);
      const virshUri = `qemu:///system?socket=${libvirtd?.env['ODYSSEY_LIBVIRT_SOCKET'] ?? ''}`;
      const virsh = (...args: string[]) => execFileP('virsh', ['-q', '-c', virshUri, ...args]);
      await virsh('define', join(bare, 'domain.xml'));
      let bareSeconds: number;
      try {
        const t0 = performance.now();
        await virsh('start', `${VM}-bare`);
        await poll('bare boot marker', async () =>
          (await readFile(consoleLog, 'utf8').catch(() => '')).includes(MARKER) ? true : undefined,
        );
        bareSeconds = (performance.now() - t0) / 1000;
      } finally {
        await virsh('destroy', `${VM}-bare`).catch(() => undefined);
        await virsh('undefine', `${VM}-bare`);
      }
      console.log(
        `[template] AppVM start → qrexec ready ${second.toFixed(1)} s, bare libvirt boot of the same disks → ` +
          `agent ready ${bareSeconds.toFixed(1)} s, ratio ${(second / bareSeconds).toFixed(2)}`,
      );
      // A measurement, not a verdict: both boots got there.
      expect(bareSeconds).toBeGreaterThan(0);
    },
    3 * BOOT_DEADLINE_MS,
  );
});
