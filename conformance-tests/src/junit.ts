import type { CheckResult } from './check.js';
import type { Report } from './report.js';
import { escapeMarkup } from './xml-text.js';

/*
 * The report as JUnit XML for CI systems: a testsuite per backend, a testcase
 * per check (classname BACKEND.CATEGORY, name the check id, time its seconds), `failure` for a
 * failed check and `skipped` for an unsupported one, both with the reason as
 * report.json has it, and a warned check a passed one whose system-out says the
 * warning; the backend's metrics are the suite's properties.
 */

const count = (checks: readonly CheckResult[], status: CheckResult['status']): number =>
  checks.filter((c) => c.status === status).length;

function testcase(backend: string, check: CheckResult): string {
  const attrs = `classname="${escapeMarkup(`${backend}.${check.category}`)}" name="${escapeMarkup(check.id)}" time="${(check.durationMs / 1000).toFixed(3)}"`;
  const reason = escapeMarkup(check.reason);
  switch (check.status) {
    case 'pass':
      return `    <testcase ${attrs}/>`;
    case 'fail':
      return `    <testcase ${attrs}>\n      <failure message="${reason}" type="fail">${reason}</failure>\n    </testcase>`;
    case 'unsupported':
      return `    <testcase ${attrs}>\n      <skipped message="${reason}"/>\n    </testcase>`;
    case 'warn':
      return `    <testcase ${attrs}>\n      <system-out>warning: ${reason}</system-out>\n    </testcase>`;
  }
}

/** A backend that could not be opened: one skipped test case that says why, so CI shows it was not run. */
function notRunSuite(backend: string, reason: string): string {
  const name = escapeMarkup(backend);
  return [
    `  <testsuite name="${name}" tests="1" failures="0" errors="0" skipped="1">`,
    `    <testcase classname="${name}" name="not-run" time="0">`,
    `      <skipped message="${escapeMarkup(`not run: ${reason}`)}"/>`,
    '    </testcase>',
    '  </testsuite>',
  ].join('\n');
}

export function renderJUnit(report: Report): string {
  const all = report.backends.flatMap((b) => b.checks);
  const notRun = report.backends.filter((b) => b.notRun !== undefined).length;
  const suites = report.backends.map((b) => {
    if (b.notRun !== undefined) return notRunSuite(b.backend, b.notRun);
    const metrics = Object.entries(b.metrics);
    const properties =
      metrics.length === 0
        ? []
        : [
            '    <properties>',
            ...metrics.map(
              ([name, value]) => `      <property name="${escapeMarkup(name)}" value="${String(value)}"/>`,
            ),
            '    </properties>',
          ];
    return [
      `  <testsuite name="${escapeMarkup(b.backend)}" tests="${b.checks.length}" failures="${count(b.checks, 'fail')}" errors="0" skipped="${count(b.checks, 'unsupported')}">`,
      ...properties,
      ...b.checks.map((c) => testcase(b.backend, c)),
      '  </testsuite>',
    ].join('\n');
  });
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="odyssey-conformance" tests="${all.length + notRun}" failures="${count(all, 'fail')}" errors="0" skipped="${count(all, 'unsupported') + notRun}">`,
    ...suites,
    '</testsuites>',
    '',
  ].join('\n');
}
