/**
 * A backend that loads but cannot be opened is reported "not run" with the reason, in every
 * report format, as the virtualbox backend is where VirtualBox is not installed. Real runs of the
 * CLI on @odyssey/backend-virtualbox; needs `npx tsc -b conformance-tests backends/virtualbox` first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';

import { supported, unsupported, type VmmCapabilities } from '@odyssey/hal';

import { renderJUnit } from '../src/junit.js';
import { declaredOf, writeReport, type Report } from '../src/report.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const VBOX_DRIVER = '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_vbox.so';
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function runVirtualBox(args: string[], env: NodeJS.ProcessEnv = {}) {
  if (!existsSync(CLI)) throw new Error('build first: npx tsc -b conformance-tests backends/virtualbox');
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-not-run-'));
  dirs.push(dir);
  const run = spawnSync(
    process.execPath,
    [CLI, '--backend', 'virtualbox', '--report', dir, '--junit', join(dir, 'junit.xml'), ...args],
    { encoding: 'utf8', env: { ...process.env, CI: '1', ...env }, timeout: 60_000 },
  );
  const read = (file: string) => readFile(join(dir, file), 'utf8');
  return { run, report: JSON.parse(await read('report.json')) as Report, read };
}

it('reports virtualbox not run, with the reason, when libvirt is not there', async () => {
  const { run, report, read } = await runVirtualBox([], {
    ODYSSEY_LIBVIRT_SOCKET: join(tmpdir(), 'odyssey-no-such-libvirtd', 'libvirt-sock'),
  });
  expect(run.status).toBe(3);
  const [backend] = report.backends;
  expect(backend?.backend).toBe('virtualbox');
  expect(backend?.checks).toEqual([]);
  expect(backend?.declared?.isolation).toBe('hosted-vm');
  expect(backend?.notRun).toMatch(
    /^backend virtualbox: open\(\) failed: cannot reach libvirt at vbox:\/\/\/session: /,
  );
  expect(run.stdout).toBe(`not run (virtualbox): ${backend?.notRun}\n`);
  const md = await read('report.md');
  expect(md).toContain('| run | **NOT RUN** |');
  expect(md).toContain(`- virtualbox not run: ${backend?.notRun}`);
  expect(await read('report.html')).toContain('<td class="notrun" title="backend virtualbox: open() failed');
  expect(await read('junit.xml')).toContain('<skipped message="not run: backend virtualbox: open() failed');
});

const whyNoVbox =
  process.getuid?.() !== 0
    ? 'not root (a private libvirtd needs root)'
    : !existsSync(VBOX_DRIVER)
      ? `libvirt's vbox driver is not installed (${VBOX_DRIVER}: libvirt-daemon-driver-vbox)`
      : undefined;
if (whyNoVbox) console.warn(`[not-run] libvirt vbox driver case SKIPPED: ${whyNoVbox}`);

it.skipIf(whyNoVbox)('gives libvirt’s own reason when its vbox driver finds no VirtualBox', async () => {
  const { run, report } = await runVirtualBox(['--libvirtd', 'private']);
  expect(run.status).toBe(3);
  // What libvirt says when VirtualBox (its XPCOM C glue) is not installed.
  expect(report.backends[0]?.notRun).toMatch(/internal error: unable to initialize VirtualBox driver API$/);
});

const caps = (name: string): VmmCapabilities => ({
  name,
  isolation: 'hosted-vm',
  guestImages: [],
  domainsOnClose: 'survive',
  virtModes: ['hvm'],
  pause: supported,
  suspend: unsupported('no'),
  stats: supported,
  blockDevices: supported,
  pciDevices: supported,
  usbDevices: supported,
  vmToVmVchan: supported,
});

it('keeps a not-run column beside a backend that ran, with no tallies of its own', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-not-run-matrix-'));
  dirs.push(dir);
  const check = {
    id: 'api.x',
    category: 'api',
    section: 'core',
    status: 'pass',
    reason: '',
    durationMs: 1,
  } as const;
  await writeReport(dir, {
    backend: 'ran',
    declared: declaredOf('ran', caps('ran')),
    checks: [check],
    metrics: {},
  });
  const report = await writeReport(dir, {
    backend: 'absent',
    declared: declaredOf('absent', caps('absent')),
    checks: [],
    metrics: {},
    notRun: 'no hypervisor',
  });
  const md = await readFile(join(dir, 'report.md'), 'utf8');
  expect(md).toContain('|  | ran | absent |');
  expect(md).toContain('| run | ran | **NOT RUN** |');
  expect(md).toContain('| core: pass | 1 | - |');
  expect(md).toContain('| api.x | pass | - |');
  expect(md).toContain('- absent not run: no hypervisor');
  const junit = renderJUnit(report);
  expect(junit).toContain('tests="2" failures="0" errors="0" skipped="1"');
  expect(junit).toContain('<testcase classname="absent" name="not-run" time="0">');
});
