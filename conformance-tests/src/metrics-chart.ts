import type { Report } from './report.js';
import { escapeMarkup } from './xml-text.js';

/*
 * The metrics across backends as one SVG image, drawn here so the report
 * needs no network and no plotting library: a panel per metric (their units
 * differ), a bar per backend scaled to the largest value of that metric.
 */

/** Backend colours, in report order; more backends than colours reuse them. */
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#e15759', '#76b7b2'];

const WIDTH = 760;
const LABEL = 250;
const BAR = 16;
const GAP = 4;
const PANEL_GAP = 14;
const TOP = 30;

/** The unit a metric's name ends in, as the report writes it. */
export function metricUnit(name: string): string {
  if (name.endsWith('_mb_per_s')) return 'MB/s';
  if (name.endsWith('_ms')) return 'ms';
  if (name.endsWith('_s')) return 's';
  if (name.endsWith('_ratio')) return '×';
  if (name.endsWith('_mib')) return 'MiB';
  return '';
}

/** Metric names in the order the backends first report them. */
export function metricNames(report: Report): string[] {
  const names: string[] = [];
  for (const b of report.backends)
    for (const name of Object.keys(b.metrics)) if (!names.includes(name)) names.push(name);
  return names;
}

const round = (n: number): string => String(Math.round(n * 100) / 100);

export function renderMetricsChart(report: Report): string {
  const names = metricNames(report);
  const backends = report.backends.map((b) => b.backend);
  const parts: string[] = [];
  backends.forEach((name, i) => {
    const x = LABEL + i * 130;
    parts.push(
      `<rect x="${x}" y="8" width="12" height="12" fill="${PALETTE[i % PALETTE.length]}"/>`,
      `<text x="${x + 16}" y="18">${escapeMarkup(name)}</text>`,
    );
  });
  let y = TOP;
  for (const metric of names) {
    const values = report.backends.map((b) => b.metrics[metric]);
    const max = Math.max(...values.map((v) => (v === undefined ? 0 : Math.abs(v))));
    const height = backends.length * (BAR + GAP);
    parts.push(`<text x="0" y="${y + height / 2 + 4}">${escapeMarkup(metric)}</text>`);
    values.forEach((value, i) => {
      const top = y + i * (BAR + GAP);
      if (value === undefined) {
        parts.push(`<text x="${LABEL}" y="${top + BAR - 4}" fill="#888">-</text>`);
        return;
      }
      const length = max === 0 ? 0 : Math.round((Math.abs(value) / max) * (WIDTH - LABEL - 110));
      parts.push(
        `<rect x="${LABEL}" y="${top}" width="${length}" height="${BAR}" fill="${PALETTE[i % PALETTE.length]}"><title>${escapeMarkup(`${backends[i] ?? ''} ${metric}`)}</title></rect>`,
        `<text x="${LABEL + length + 6}" y="${top + BAR - 4}">${round(value)} ${metricUnit(metric)}</text>`,
      );
    });
    y += height + PANEL_GAP;
  }
  if (names.length === 0) parts.push(`<text x="0" y="${y + 12}">no metrics</text>`);
  const total = names.length === 0 ? y + 20 : y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${total}" viewBox="0 0 ${WIDTH} ${total}" font-family="sans-serif" font-size="12">`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
