import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';

import { supported, unsupported, type VmmCapabilities } from '@odyssey/hal';

import { declaredOf, writeReport } from '../src/report.js';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('merges backends into one matrix and replaces an earlier run of the same backend', async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-report-'));
  const check = (id: string, status: 'pass' | 'fail' | 'unsupported', reason = '') => ({
    id,
    category: 'lifecycle' as const,
    section: 'backend' as const,
    status,
    reason,
    durationMs: 0,
  });
  await writeReport(dir, { backend: 'kvm', checks: [check('lifecycle.start', 'fail', 'old')], metrics: {} });
  await writeReport(dir, {
    backend: 'process',
    checks: [check('lifecycle.start', 'pass'), check('lifecycle.crash', 'unsupported', 'no way')],
    metrics: { start_to_qrexec_ready_ms: 90, vchan_mb_per_s: 150.5 },
  });
  await writeReport(dir, {
    backend: 'kvm',
    checks: [check('lifecycle.start', 'pass')],
    metrics: { start_to_qrexec_ready_ms: 4000 },
  });
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as {
    backends: { backend: string }[];
  };
  expect(report.backends.map((b) => b.backend)).toEqual(['process', 'kvm']);
  const md = await readFile(join(dir, 'report.md'), 'utf8');
  expect(md).toContain('| check | process | kvm |');
  expect(md).toContain('| lifecycle.start | pass | pass |');
  expect(md).toContain('| lifecycle.crash | unsupported | - |');
  expect(md).toContain('| start_to_qrexec_ready_ms | 90 ms | 4000 ms |');
  expect(md).toContain('| vchan_mb_per_s | 150.5 MB/s | - |');
  expect(md).toContain('- process lifecycle.crash (unsupported): no way');
  expect(md).not.toContain('old');
});

it('shows the declaration, the isolation class, and the core section apart from the backend one', async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-report-'));
  const caps: VmmCapabilities = {
    name: 'mine',
    isolation: 'hosted-vm',
    guestImages: ['odyssey-linux-kvm'],
    domainsOnClose: 'stop',
    virtModes: ['hvm'],
    pause: supported,
    suspend: unsupported('no disk to save to'),
    stats: supported,
    blockDevices: unsupported('none'),
    pciDevices: unsupported('none'),
    usbDevices: unsupported('none'),
    vmToVmVchan: supported,
  };
  await writeReport(dir, {
    backend: 'mine',
    declared: declaredOf('./my-backend.js', caps),
    checks: [
      { id: 'api.list', category: 'api', section: 'core', status: 'pass', reason: '', durationMs: 10 },
      {
        id: 'hal.start',
        category: 'hal',
        section: 'backend',
        status: 'fail',
        reason: 'state() said Halted',
        durationMs: 10,
      },
      {
        id: 'hal.pause',
        category: 'hal',
        section: 'backend',
        status: 'warn',
        reason: 'declared but',
        durationMs: 10,
      },
    ],
    metrics: {},
  });
  const md = await readFile(join(dir, 'report.md'), 'utf8');
  expect(md).toContain('| isolation | hosted-vm |');
  expect(md).toContain('| guest images | odyssey-linux-kvm |');
  expect(md).toContain('| loaded from | ./my-backend.js |');
  expect(md).toContain('| suspend | unsupported: no disk to save to |');
  expect(md).toContain('| domains on close() | stop |');
  expect(md).toContain('| backend: fail | 1 |');
  expect(md).toContain('| backend: warn | 1 |');
  expect(md).toContain('| core: pass | 1 |');
  const core = md.slice(md.indexOf('## Core'), md.indexOf('## Reasons'));
  const backend = md.slice(md.indexOf('## What the backend earned'), md.indexOf('## Core'));
  expect(core).toContain('| api.list | pass |');
  expect(core).not.toContain('hal.start');
  expect(backend).toContain('| hal.start | **FAIL** |');
  expect(md).toContain('- mine hal.start (fail): state() said Halted');
});

it('keeps every backend when runs write into one report directory at once, junit included', async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-report-'));
  const junit = join(dir, 'junit.xml');
  const backends = ['process', 'kvm', 'lxc', 'xen', 'virtualbox', 'mine-1', 'mine-2', 'mine-3'];
  await Promise.all(
    backends.map((backend) =>
      writeReport(
        dir,
        {
          backend,
          checks: [
            {
              id: 'lifecycle.start',
              category: 'lifecycle',
              section: 'backend',
              status: 'pass',
              reason: '',
              durationMs: 0,
            },
          ],
          metrics: {},
        },
        junit,
      ),
    ),
  );
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as {
    backends: { backend: string }[];
  };
  expect(report.backends.map((b) => b.backend).sort()).toEqual([...backends].sort());
  const xml = await readFile(junit, 'utf8');
  for (const backend of backends) expect(xml).toContain(`name="${backend}"`);
  await expect(readFile(join(dir, '.report.lock'))).rejects.toThrow(/ENOENT/);
});
