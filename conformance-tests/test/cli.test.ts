/**
 * The runner end to end on the process backend: the built CLI against a real odysseyd, its report
 * files and its summary line. Needs `npx tsc -b conformance-tests backends/process` first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let dir = '';
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('build first: npx tsc -b conformance-tests backends/process');
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('runs every category on the process backend and writes report.json and report.md', async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-conformance-test-'));
  const run = spawnSync(process.execPath, [CLI, '--backend', 'process', '--report', dir], {
    encoding: 'utf8',
    env: { ...process.env, CI: '1' },
    timeout: 150_000,
  });
  expect(run.stdout).toMatch(/^\d+ passed, \d+ failed, \d+ unsupported \(process\)\n$/);
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as {
    backends: {
      backend: string;
      checks: { id: string; category: string; status: string; reason: string }[];
      metrics: Record<string, number>;
    }[];
  };
  expect(report.backends.map((b) => b.backend)).toEqual(['process']);
  const [proc] = report.backends;
  const categories = new Set(proc?.checks.map((c) => c.category));
  expect([...categories].sort()).toEqual([
    'api',
    'dispvm',
    'guest',
    'hal',
    'isolation',
    'lifecycle',
    'management',
    'network',
    'qrexec',
    'vchan',
  ]);
  // A backend that gives no qube a network interface says so, and the network checks are not attempted.
  const network = proc?.checks.filter((c) => c.category === 'network') ?? [];
  expect(network.length).toBeGreaterThan(5);
  for (const check of network) {
    expect(check).toMatchObject({
      status: 'unsupported',
      reason: expect.stringContaining(
        "declared: network: process domains share the host's network stack",
      ) as unknown,
    });
  }
  // The Debian template's guest checks need a backend that boots its image: here they say why they do not run.
  expect(proc?.checks.find((c) => c.id === 'guest.template-install')).toMatchObject({
    status: 'unsupported',
    reason: expect.stringContaining(
      'the Debian template is built for odyssey-linux-kvm, odyssey-linux-xen, odyssey-rootfs-lxc only',
    ) as unknown,
  });
  expect(proc?.checks.filter((c) => c.status === 'fail').map((c) => `${c.id}: ${c.reason}`)).toEqual([]);
  expect(proc?.checks.filter((c) => c.category === 'api').length).toBeGreaterThanOrEqual(40);
  expect(proc?.metrics['start_to_qrexec_ready_ms']).toBeGreaterThan(0);
  expect(proc?.metrics['vchan_mb_per_s']).toBeGreaterThan(0);
  expect(proc?.metrics['vchan_vm_to_admin_mb_per_s']).toBeGreaterThan(0);
  expect(proc?.metrics['vchan_dom0_to_vm_mb_per_s']).toBeGreaterThan(0);
  expect(
    proc?.checks.filter((c) => /dom0-(to-vm|call)/.test(c.id)).map((c) => `${c.id} ${c.status}`),
  ).toEqual([
    'qrexec.dom0-to-vm-call pass',
    'qrexec.dom0-to-vm-exit-codes pass',
    'vchan.dom0-to-vm-throughput pass',
    'dispvm.dom0-call pass',
  ]);
  expect(proc?.checks.find((c) => c.id === 'vchan.concurrent-calls')?.status).toBe('pass');
  expect(run.status).toBe(0);
  const md = await readFile(join(dir, 'report.md'), 'utf8');
  expect(md).toContain('| check | process |');
  expect(md).toContain('| lifecycle.start | pass |');
  expect(md).toContain('| isolation | process |');
  expect(md).toContain('| hal.guest-crash | pass |');
  expect(md).toMatch(/\| start_to_qrexec_ready_ms \| \d+ ms \|/);
  expect(md).toMatch(/\| vchan_mb_per_s \| [\d.]+ MB\/s \|/);
}, 180_000);

it('runs only the categories asked for, plus the lifecycle steps that give them running guests', async () => {
  const only = await mkdtemp(join(tmpdir(), 'odyssey-conformance-only-'));
  try {
    const run = spawnSync(
      process.execPath,
      [CLI, '--backend', 'process', '--report', only, '--only', 'dispvm'],
      {
        encoding: 'utf8',
        env: { ...process.env, CI: '1' },
        timeout: 150_000,
      },
    );
    expect(run.status).toBe(0);
    const report = JSON.parse(await readFile(join(only, 'report.json'), 'utf8')) as {
      backends: { checks: { id: string }[] }[];
    };
    expect(report.backends[0]?.checks.map((c) => c.id)).toEqual([
      'lifecycle.create-qubes',
      'lifecycle.start-guests',
      'dispvm.create',
      'dispvm.start',
      'dispvm.dom0-call',
      'dispvm.qrexec-call',
      'dispvm.kill-removes',
      'dispvm.round-trip',
      'dispvm.preload-round-trip',
      'dispvm.preload-qrexec-call',
      'dispvm.preload-max-removed-empties-pool',
      'dispvm.qrexec-call-leaves-nothing',
      'dispvm.qrexec-call-denied',
    ]);
  } finally {
    await rm(only, { recursive: true, force: true });
  }
}, 180_000);

it('refuses an unknown category', () => {
  const run = spawnSync(process.execPath, [CLI, '--backend', 'process', '--only', 'nonsense'], {
    encoding: 'utf8',
  });
  expect(run.status).not.toBe(0);
  expect(run.stderr).toContain('unknown categories: nonsense');
});

it('refuses --nested on a backend that does not declare it, and with a private libvirtd', () => {
  const other = spawnSync(process.execPath, [CLI, '--backend', 'process', '--nested'], { encoding: 'utf8' });
  expect(other.status).not.toBe(0);
  expect(other.stderr).toContain(
    '--nested boots a Xen dom0, so it runs only a backend whose package declares odyssey.conformance.nested "xen" (not process)',
  );
  // xen's package declares it, by name or by directory: the next rule is the one that stops it.
  const xenDir = fileURLToPath(new URL('../../backends/xen', import.meta.url));
  for (const xen of ['xen', xenDir]) {
    const privateLibvirtd = spawnSync(
      process.execPath,
      [CLI, '--backend', xen, '--nested', '--libvirtd', 'private'],
      { encoding: 'utf8' },
    );
    expect(privateLibvirtd.status, xen).not.toBe(0);
    expect(privateLibvirtd.stderr, xen).toContain("--nested uses dom0's own libvirtd");
  }
});
