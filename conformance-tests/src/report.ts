import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { lock } from 'proper-lockfile';

import type { VmmCapabilities } from '@odyssey/hal';

import type { CheckResult } from './check.js';
import { renderHtml } from './html-report.js';
import { renderJUnit } from './junit.js';
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

/** Readers outside the lock (CI's checks of report.json) see the old file or the new one, whole. */
async function replaceFile(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

/**
 * Merges this backend's results into DIR's report (replacing an earlier run of the same backend).
 * Runs of several backends may share DIR at once (CI runs nested Xen beside the others), so the
 * read-merge-write holds DIR's lock: without it one run could read the other's half-written file,
 * or both read the same report and the later write drop the earlier backend. JUNIT_FILE, when
 * given, is rendered from the same merged report under the lock.
 */
export async function writeReport(dir: string, result: BackendReport, junitFile?: string): Promise<Report> {
  await mkdir(dir, { recursive: true });
  const release = await lock(dir, {
    lockfilePath: join(dir, '.report.lock'),
    retries: { retries: 60, minTimeout: 100, maxTimeout: 1000 },
  });
  try {
    const report = await previous(dir);
    report.backends = [...report.backends.filter((b) => b.backend !== result.backend), result];
    await replaceFile(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    for (const writer of REPORT_WRITERS) await replaceFile(join(dir, writer.file), writer.render(report));
    if (junitFile) await replaceFile(junitFile, renderJUnit(report));
    return report;
  } finally {
    await release();
  }
}
