import type { CheckResult } from './check.js';
import { metricNames, metricUnit, renderMetricsChart } from './metrics-chart.js';
import type { Declared, Report } from './report.js';
import { escapeMarkup as esc } from './xml-text.js';

/*
 * report.html: one self-contained page (no scripts, no network): the totals,
 * the metrics with their chart as an image (an SVG data URI), what each backend
 * declared of itself, the matrix of checks × backends coloured by outcome, and
 * the reason of every check that did not pass.
 */

const STYLE = `body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
td.pass{background:#d9f2d9}td.fail{background:#f8c9c9;font-weight:bold}td.unsupported{background:#e6e6e6;color:#555}
td.warn{background:#fbeec1}td.notrun{background:#f8c9c9}
td.none{color:#999}`;

const count = (checks: readonly CheckResult[], status: CheckResult['status']): number =>
  checks.filter((c) => c.status === status).length;

function row(cells: readonly string[], header = false): string {
  const tag = header ? 'th' : 'td';
  return `<tr>${cells.map((c) => (c.startsWith('<t') ? c : `<${tag}>${c}</${tag}>`)).join('')}</tr>`;
}

/** What each backend declared (the markdown report's table too): a capability's reason in full. */
function declaredRows(report: Report): string[] {
  const backends = report.backends;
  const capabilityNames: string[] = [];
  for (const b of backends)
    for (const key of Object.keys(b.declared?.capabilities ?? {}))
      if (!capabilityNames.includes(key)) capabilityNames.push(key);
  const declared = (pick: (d: Declared) => string) =>
    backends.map((b) => (b.declared ? esc(pick(b.declared)) : '-'));
  const capability = (key: string) =>
    backends.map((b) => {
      const value = b.declared?.capabilities[key];
      if (value === undefined) return b.declared ? 'not declared' : '-';
      return `<td class="${value === 'supported' ? 'pass' : 'unsupported'}">${esc(value)}</td>`;
    });
  return [
    row(['loaded from', ...declared((d) => d.module)]),
    row(['guest images', ...declared((d) => d.guestImages.join(', ') || 'none')]),
    row(['virt modes', ...declared((d) => d.virtModes.join(', ') || 'none')]),
    row(['domains on close()', ...declared((d) => d.domainsOnClose ?? 'not declared')]),
    ...capabilityNames.map((key) => row([esc(key), ...capability(key)])),
  ];
}

export function renderHtml(report: Report): string {
  const names = report.backends.map((b) => esc(b.backend));
  const ids: string[] = [];
  for (const b of report.backends) for (const c of b.checks) if (!ids.includes(c.id)) ids.push(c.id);
  const chart = Buffer.from(renderMetricsChart(report)).toString('base64');
  const label = { pass: 'passed', fail: 'failed', unsupported: 'unsupported', warn: 'warnings' } as const;
  const totals = [
    // A backend that could not be opened is a column too: not run, and why, never blank.
    ...(report.backends.some((b) => b.notRun !== undefined)
      ? [
          row([
            'run',
            ...report.backends.map((b) =>
              b.notRun === undefined ? 'ran' : `<td class="notrun" title="${esc(b.notRun)}">not run</td>`,
            ),
          ]),
        ]
      : []),
    row(['isolation', ...report.backends.map((b) => esc(b.declared?.isolation ?? '-'))]),
    ...(['pass', 'fail', 'unsupported', 'warn'] as const).map((status) =>
      row([
        label[status],
        ...report.backends.map((b) => (b.notRun !== undefined ? '-' : String(count(b.checks, status)))),
      ]),
    ),
  ];
  const metrics = metricNames(report).map((m) =>
    row([
      esc(m),
      ...report.backends.map((b) => (b.metrics[m] === undefined ? '-' : `${b.metrics[m]} ${metricUnit(m)}`)),
    ]),
  );
  const matrix = ids.map((id) =>
    row([
      esc(id),
      ...report.backends.map((b) => {
        const c = b.checks.find((x) => x.id === id);
        return c
          ? `<td class="${c.status}" title="${esc(c.reason)}">${c.status}</td>`
          : '<td class="none">-</td>';
      }),
    ]),
  );
  const notRun = report.backends.flatMap((b) =>
    b.notRun === undefined ? [] : [`<li>${esc(b.backend)} not run: ${esc(b.notRun)}</li>`],
  );
  const checkReasons = report.backends.flatMap((b) =>
    b.checks
      .filter((c) => c.status !== 'pass')
      .map((c) => `<li>${esc(b.backend)} <code>${esc(c.id)}</code> (${c.status}): ${esc(c.reason)}</li>`),
  );
  const reasons = [...notRun, ...checkReasons];
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8"><title>Odyssey conformance report</title>',
    `<style>${STYLE}</style></head><body>`,
    '<h1>Odyssey conformance report</h1>',
    '<table>',
    row(['', ...names], true),
    ...totals,
    '</table>',
    '<h2>Metrics</h2>',
    '<table>',
    row(['metric', ...names], true),
    ...metrics,
    '</table>',
    `<img alt="metrics across backends" src="data:image/svg+xml;base64,${chart}">`,
    '<h2>Declared capabilities</h2>',
    '<table>',
    row(['capability', ...names], true),
    ...declaredRows(report),
    '</table>',
    '<h2>Checks</h2>',
    '<table>',
    row(['check', ...names], true),
    ...matrix,
    '</table>',
    '<h2>Reasons</h2>',
    reasons.length === 0 ? '<p>every check passed</p>' : `<ul>\n${reasons.join('\n')}\n</ul>`,
    '</body></html>',
    '',
  ].join('\n');
}
