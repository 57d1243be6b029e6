import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { CategoryError, chooseCategories } from '../src/categories.js';
import type { CheckResult } from '../src/check.js';
import { renderHtml } from '../src/html-report.js';
import { renderJUnit } from '../src/junit.js';
import { renderMetricsChart } from '../src/metrics-chart.js';
import { writeReport, type Report } from '../src/report.js';

let dir = '';
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

const check = (id: string, status: CheckResult['status'], reason = '', durationMs = 1250): CheckResult => ({
  id,
  category: id.startsWith('api') ? 'api' : 'lifecycle',
  section: id.startsWith('api') ? 'core' : 'backend',
  status,
  reason,
  durationMs,
});

const REPORT: Report = {
  backends: [
    {
      backend: 'process',
      checks: [
        check('lifecycle.start', 'pass'),
        check('lifecycle.crash', 'unsupported', 'no API call crashes a guest'),
      ],
      metrics: { start_to_qrexec_ready_ms: 90, vchan_mb_per_s: 150.5 },
    },
    {
      backend: 'kvm',
      declared: {
        module: 'kvm',
        isolation: 'hosted-vm',
        guestImages: ['odyssey-linux-kvm'],
        virtModes: ['hvm'],
        domainsOnClose: 'survive',
        capabilities: { pause: 'supported', pciDevices: 'unsupported: no <passthrough> & no IOMMU' },
      },
      checks: [
        check('lifecycle.start', 'pass'),
        check('api.bad<&>', 'fail', 'expected "0\\0", got <EXCEPTION> & \x01'),
        check('lifecycle.crash', 'warn', 'a crash came as stopped: shutdown', 61_007),
      ],
      metrics: { start_to_qrexec_ready_ms: 4000 },
    },
  ],
};

/** xmllint's verdict on a document, or null when the machine has no xmllint. */
async function xmllint(text: string): Promise<string | null> {
  if (spawnSync('xmllint', ['--version']).error) return null;
  const file = join(dir || (dir = await mkdtemp(join(tmpdir(), 'odyssey-formats-'))), 'doc.xml');
  await writeFile(file, text);
  const run = spawnSync('xmllint', ['--noout', file], { encoding: 'utf8' });
  return run.status === 0 ? 'ok' : run.stderr;
}

describe('JUnit', () => {
  it('has a testsuite per backend and a testcase per check with its seconds, failures and skips with their reasons', async () => {
    expect(renderJUnit(REPORT)).toBe(
      [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<testsuites name="odyssey-conformance" tests="5" failures="1" errors="0" skipped="1">',
        '  <testsuite name="process" tests="2" failures="0" errors="0" skipped="1">',
        '    <properties>',
        '      <property name="start_to_qrexec_ready_ms" value="90"/>',
        '      <property name="vchan_mb_per_s" value="150.5"/>',
        '    </properties>',
        '    <testcase classname="process.lifecycle" name="lifecycle.start" time="1.250"/>',
        '    <testcase classname="process.lifecycle" name="lifecycle.crash" time="1.250">',
        '      <skipped message="no API call crashes a guest"/>',
        '    </testcase>',
        '  </testsuite>',
        '  <testsuite name="kvm" tests="3" failures="1" errors="0" skipped="0">',
        '    <properties>',
        '      <property name="start_to_qrexec_ready_ms" value="4000"/>',
        '    </properties>',
        '    <testcase classname="kvm.lifecycle" name="lifecycle.start" time="1.250"/>',
        '    <testcase classname="kvm.api" name="api.bad&lt;&amp;&gt;" time="1.250">',
        '      <failure message="expected &quot;0\\0&quot;, got &lt;EXCEPTION&gt; &amp; \\x01" type="fail">expected &quot;0\\0&quot;, got &lt;EXCEPTION&gt; &amp; \\x01</failure>',
        '    </testcase>',
        '    <testcase classname="kvm.lifecycle" name="lifecycle.crash" time="61.007">',
        '      <system-out>warning: a crash came as stopped: shutdown</system-out>',
        '    </testcase>',
        '  </testsuite>',
        '</testsuites>',
        '',
      ].join('\n'),
    );
  });

  it('is well-formed XML for a strict parser', async ({ skip }) => {
    const verdict = await xmllint(renderJUnit(REPORT));
    if (verdict === null) skip('no xmllint on this machine');
    expect(verdict).toBe('ok');
  });
});

describe('report.html', () => {
  it('colours the matrix, lists totals, metrics and reasons, and embeds the chart as an image', () => {
    const html = renderHtml(REPORT);
    expect(html).toContain('<tr><th></th><th>process</th><th>kvm</th></tr>');
    expect(html).toContain('<tr><td>passed</td><td>1</td><td>1</td></tr>');
    expect(html).toContain('<tr><td>failed</td><td>0</td><td>1</td></tr>');
    expect(html).toContain('<tr><td>warnings</td><td>0</td><td>1</td></tr>');
    expect(html).toContain('<tr><td>start_to_qrexec_ready_ms</td><td>90 ms</td><td>4000 ms</td></tr>');
    expect(html).toContain('<tr><td>vchan_mb_per_s</td><td>150.5 MB/s</td><td>-</td></tr>');
    expect(html).toContain(
      '<tr><td>lifecycle.crash</td><td class="unsupported" title="no API call crashes a guest">unsupported</td><td class="warn" title="a crash came as stopped: shutdown">warn</td></tr>',
    );
    expect(html).toContain(
      '<td class="fail" title="expected &quot;0\\0&quot;, got &lt;EXCEPTION&gt; &amp; \\x01">fail</td>',
    );
    expect(html).toContain('td.fail{background:#f8c9c9');
    expect(html).not.toMatch(/<script|https?:/);
    const uri =
      /<img alt="metrics across backends" src="data:image\/svg\+xml;base64,([A-Za-z0-9+/=]+)">/.exec(html);
    expect(Buffer.from(uri?.[1] ?? '', 'base64').toString()).toBe(renderMetricsChart(REPORT));
  });

  it('lists what each backend declared: isolation, guest images, domains on close() and every capability', () => {
    const html = renderHtml(REPORT);
    expect(html).toContain('<tr><td>isolation</td><td>-</td><td>hosted-vm</td></tr>');
    expect(html).toContain(
      [
        '<h2>Declared capabilities</h2>',
        '<table>',
        '<tr><th>capability</th><th>process</th><th>kvm</th></tr>',
        '<tr><td>loaded from</td><td>-</td><td>kvm</td></tr>',
        '<tr><td>guest images</td><td>-</td><td>odyssey-linux-kvm</td></tr>',
        '<tr><td>virt modes</td><td>-</td><td>hvm</td></tr>',
        '<tr><td>domains on close()</td><td>-</td><td>survive</td></tr>',
        '<tr><td>pause</td><td>-</td><td class="pass">supported</td></tr>',
        '<tr><td>pciDevices</td><td>-</td><td class="unsupported">unsupported: no &lt;passthrough&gt; &amp; no IOMMU</td></tr>',
        '</table>',
      ].join('\n'),
    );
  });

  it('the chart draws a bar per backend and metric, scaled to the largest, with values and units', async ({
    skip,
  }) => {
    const svg = renderMetricsChart(REPORT);
    // start_to_qrexec_ready_ms: kvm's 4000 is the full length (400 px), process's 90 is 9 px.
    expect(svg).toContain('<rect x="250" y="30" width="9" height="16" fill="#4e79a7">');
    expect(svg).toContain('<rect x="250" y="50" width="400" height="16" fill="#f28e2b">');
    expect(svg).toContain('<text x="656" y="62">4000 ms</text>');
    // vchan_mb_per_s: only process has it.
    expect(svg).toContain('<rect x="250" y="84" width="400" height="16" fill="#4e79a7">');
    expect(svg).toContain('<text x="656" y="96">150.5 MB/s</text>');
    expect(svg).toContain('<text x="250" y="116" fill="#888">-</text>');
    const verdict = await xmllint(svg);
    if (verdict === null) skip('no xmllint on this machine');
    expect(verdict).toBe('ok');
  });

  it('is written next to report.json and report.md', async () => {
    dir = await mkdtemp(join(tmpdir(), 'odyssey-formats-'));
    await writeReport(dir, REPORT.backends[0] ?? { backend: '', checks: [], metrics: {} });
    const html = await readFile(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('<tr><th></th><th>process</th></tr>');
  });
});

describe('--only / --skip', () => {
  it('takes comma-separated and repeated names, and --skip removes from --only or from all', () => {
    expect(chooseCategories(undefined, undefined)).toBeUndefined();
    expect(chooseCategories(['api,qrexec', 'vchan'], undefined)).toEqual(['api', 'qrexec', 'vchan']);
    expect(chooseCategories(undefined, ['vchan', 'dispvm'])).toEqual([
      'api',
      'hal',
      'lifecycle',
      'qrexec',
      'management',
      'guest',
      'network',
      'isolation',
    ]);
    expect(chooseCategories(['api', 'qrexec'], ['qrexec'])).toEqual(['api']);
  });

  it('refuses unknown names and a choice that leaves nothing', () => {
    expect(() => chooseCategories(['api', 'nonsense'], ['bogus'])).toThrow(
      new CategoryError('unknown categories: nonsense, bogus'),
    );
    expect(() => chooseCategories(['api'], ['api'])).toThrow(new CategoryError('no category left to run'));
  });
});
