import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { CheckResult } from './check.js';

export interface BackendReport {
  backend: string;
  checks: CheckResult[];
  metrics: Record<string, number>;
}

export interface Report {
  backends: BackendReport[];
}

/** Reads DIR/report.json if another run left one, so backends accumulate into one matrix. */
async function previous(dir: string): Promise<Report> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as Report;
    return Array.isArray(parsed.backends) ? parsed : { backends: [] };
  } catch {
    return { backends: [] };
  }
}

const MARK = { pass: 'pass', fail: '**FAIL**', unsupported: 'unsupported' } as const;

export function renderMarkdown(report: Report): string {
  const names = report.backends.map((b) => b.backend);
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const ids: string[] = [];
  for (const b of report.backends) for (const c of b.checks) if (!ids.includes(c.id)) ids.push(c.id);
  const metric = (key: string, unit: string) =>
    row([
      key,
      ...report.backends.map((b) => (b.metrics[key] === undefined ? '-' : `${b.metrics[key]} ${unit}`)),
    ]);
  const tally = (status: CheckResult['status']) =>
    report.backends.map((b) => String(b.checks.filter((c) => c.status === status).length));
  const lines = [
    '# Odyssey conformance report',
    '',
    row(['', ...names]),
    row(['---', ...names.map(() => '---')]),
    row(['passed', ...tally('pass')]),
    row(['failed', ...tally('fail')]),
    row(['unsupported', ...tally('unsupported')]),
    metric('start_to_qrexec_ready_ms', 'ms'),
    metric('vchan_dom0_to_vm_mb_per_s', 'MB/s'),
    metric('vchan_mb_per_s', 'MB/s'),
    metric('vchan_vm_to_admin_mb_per_s', 'MB/s'),
    metric('dispvm_round_trip_ms', 'ms'),
    // checks/qvm-run.ts: a qrexec call to @dispvm against one to a running qube, from the same qube.
    metric('dispvm_call_ms', 'ms'),
    metric('running_qube_call_ms', 'ms'),
    metric('dispvm_call_ratio', '×'),
    // bench/vchan-xen.js in the nested run: the raw transport against the socket one in the same dom0.
    metric('xen_vchan_mb_per_s', 'MB/s'),
    metric('socket_vchan_mb_per_s', 'MB/s'),
    metric('xen_to_socket_ratio', '×'),
    metric('nested_total_s', 's'),
    '',
    '## Checks',
    '',
    row(['check', ...names]),
    row(['---', ...names.map(() => '---')]),
    ...ids.map((id) =>
      row([
        id,
        ...report.backends.map((b) => {
          const c = b.checks.find((x) => x.id === id);
          return c ? MARK[c.status] : '-';
        }),
      ]),
    ),
    '',
    '## Reasons',
    '',
    ...report.backends.flatMap((b) =>
      b.checks
        .filter((c) => c.status !== 'pass')
        .map(
          (c) =>
            `- ${b.backend} ${c.id} (${c.status}): ${c.reason.replace(/\s+/g, ' ').replace(/\|/g, '\\|')}`,
        ),
    ),
    '',
  ];
  return lines.join('\n');
}

/** Merges this backend's results into DIR's report (replacing an earlier run of the same backend). */
export async function writeReport(dir: string, result: BackendReport): Promise<Report> {
  await mkdir(dir, { recursive: true });
  const report = await previous(dir);
  report.backends = [...report.backends.filter((b) => b.backend !== result.backend), result];
  await writeFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(dir, 'report.md'), renderMarkdown(report));
  return report;
}
