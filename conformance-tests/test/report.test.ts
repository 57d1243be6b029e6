import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';

import { writeReport } from '../src/report.js';

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
