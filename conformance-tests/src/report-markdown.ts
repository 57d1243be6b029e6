import { sectionOf, type CheckResult, type Section, type Status } from './check.js';
import { metricNames, metricUnit } from './metrics-chart.js';
import type { Report } from './report.js';

const MARK: Record<Status, string> = {
  pass: 'pass',
  fail: '**FAIL**',
  unsupported: 'unsupported',
  warn: 'warn',
};

const SECTIONS: readonly { section: Section; title: string }[] = [
  { section: 'backend', title: 'What the backend earned' },
  { section: 'core', title: 'Core (never reaches the backend)' },
];

const cell = (text: string) => text.replace(/\s+/g, ' ').replace(/\|/g, '\\|');

/** The matrix: declarations, per-section tallies, metrics, checks by section, and every reason. */
export function renderMarkdown(report: Report): string {
  const { backends } = report;
  const names = backends.map((b) => b.backend);
  const row = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`;
  const header = (first: string) => [row([first, ...names]), row(['---', ...names.map(() => '---')])];
  const tally = (section: Section, status: CheckResult['status']) =>
    row([
      `${section}: ${status}`,
      ...backends.map((b) =>
        b.notRun !== undefined
          ? '-'
          : String(b.checks.filter((c) => sectionOf(c.category) === section && c.status === status).length),
      ),
    ]);
  const capabilityNames: string[] = [];
  for (const b of backends)
    for (const key of Object.keys(b.declared?.capabilities ?? {}))
      if (!capabilityNames.includes(key)) capabilityNames.push(key);
  const declared = (pick: (d: NonNullable<(typeof backends)[number]['declared']>) => string) =>
    backends.map((b) => (b.declared ? pick(b.declared) : '-'));
  const checksOf = (section: Section) => {
    const ids: string[] = [];
    for (const b of backends)
      for (const c of b.checks) if (sectionOf(c.category) === section && !ids.includes(c.id)) ids.push(c.id);
    return ids.map((id) =>
      row([
        id,
        ...backends.map((b) => {
          const c = b.checks.find((x) => x.id === id);
          return c ? MARK[c.status] : '-';
        }),
      ]),
    );
  };
  const lines = [
    '# Odyssey conformance report',
    '',
    ...header(''),
    // A backend that could not be opened is a column too: not run, and why, never blank.
    ...(backends.some((b) => b.notRun !== undefined)
      ? [row(['run', ...backends.map((b) => (b.notRun === undefined ? 'ran' : '**NOT RUN**'))])]
      : []),
    row(['isolation', ...declared((d) => d.isolation)]),
    row(['guest images', ...declared((d) => d.guestImages.join(', ') || 'none')]),
    ...(['pass', 'fail', 'warn', 'unsupported'] as const).map((s) => tally('backend', s)),
    ...(['pass', 'fail'] as const).map((s) => tally('core', s)),
    // Every metric a backend reported, in the order first reported, the unit read off its name.
    ...metricNames(report).map((key) =>
      row([
        key,
        ...backends.map((b) => (b.metrics[key] === undefined ? '-' : `${b.metrics[key]} ${metricUnit(key)}`)),
      ]),
    ),
    '',
    '## Declared capabilities',
    '',
    ...header('capability'),
    row(['loaded from', ...declared((d) => d.module)]),
    row(['virt modes', ...declared((d) => d.virtModes.join(', ') || 'none')]),
    row(['domains on close()', ...declared((d) => d.domainsOnClose ?? 'not declared')]),
    ...capabilityNames.map((key) => row([key, ...declared((d) => d.capabilities[key] ?? 'not declared')])),
    ...SECTIONS.flatMap(({ section, title }) => [
      '',
      `## ${title}`,
      '',
      ...header('check'),
      ...checksOf(section),
    ]),
    '',
    '## Reasons',
    '',
    ...backends.flatMap((b) => (b.notRun === undefined ? [] : [`- ${b.backend} not run: ${cell(b.notRun)}`])),
    ...backends.flatMap((b) =>
      b.checks
        .filter((c) => c.status !== 'pass')
        .map((c) => `- ${b.backend} ${c.id} (${c.status}): ${cell(c.reason)}`),
    ),
    '',
  ];
  return lines.join('\n');
}
