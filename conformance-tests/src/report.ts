import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { VmmCapabilities } from '@odyssey/hal';

import type { CheckResult } from './check.js';
import { renderHtml } from './html-report.js';
import { renderMarkdown } from './report-markdown.js';

/** What the backend said of itself: the report's column header and its capability rows. */
export interface Declared {
  /** The `--backend` argument it was loaded from. */
  readonly module: string;
  readonly isolation: VmmCapabilities['isolation'];
  readonly guestImages: readonly string[];
  readonly virtModes: readonly string[];
  /** What close() means for running domains (VmmCapabilities.domainsOnClose); absent: not declared. */
  readonly domainsOnClose?: string;
  /** Each capability: `supported`, or the backend's reason it is not. */
  readonly capabilities: Readonly<Record<string, string>>;
}

export interface BackendReport {
  /** capabilities().name: one column per backend name. */
  backend: string;
  /** Absent in reports written before the suite read declarations. */
  declared?: Declared;
  checks: CheckResult[];
  metrics: Record<string, number>;
  /**
   * Why nothing was run: the backend loaded and declared itself, but could not be opened (its
   * hypervisor is not there). Absent when the suite ran.
   */
  notRun?: string;
}

export interface Report {
  backends: BackendReport[];
}

/** The declaration as the report keeps it. */
export function declaredOf(module: string, caps: VmmCapabilities): Declared {
  const capabilities: Record<string, string> = {};
  for (const [key, value] of Object.entries(caps))
    if (typeof value === 'object' && value !== null && 'supported' in value)
      capabilities[key] = value.supported ? 'supported' : `unsupported: ${value.reason}`;
  return {
    module,
    isolation: caps.isolation,
    guestImages: caps.guestImages,
    virtModes: caps.virtModes,
    // A backend written in JavaScript may leave it out; the report says so rather than guess.
    ...(typeof caps.domainsOnClose === 'string' ? { domainsOnClose: caps.domainsOnClose } : {}),
    capabilities,
  };
}

/**
 * Files written from the merged report besides report.json, each by its own module. A new
 * output is one more entry here.
 */
export const REPORT_WRITERS: readonly { file: string; render: (report: Report) => string }[] = [
  { file: 'report.md', render: renderMarkdown },
  { file: 'report.html', render: renderHtml },
];

/** Reads DIR/report.json if another run left one, so backends accumulate into one matrix. */
async function previous(dir: string): Promise<Report> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as Report;
    return Array.isArray(parsed.backends) ? parsed : { backends: [] };
  } catch {
    return { backends: [] };
  }
}

/** Merges this backend's results into DIR's report (replacing an earlier run of the same backend). */
export async function writeReport(dir: string, result: BackendReport): Promise<Report> {
  await mkdir(dir, { recursive: true });
  const report = await previous(dir);
  report.backends = [...report.backends.filter((b) => b.backend !== result.backend), result];
  await writeFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  for (const writer of REPORT_WRITERS) await writeFile(join(dir, writer.file), writer.render(report));
  return report;
}
