/**
 * The runner's CI outputs on the process backend: --junit, report.html, --only/--skip and the
 * exit codes. Needs `npx tsc -b conformance-tests backends/process` first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

let dir = '';
beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error('build first: npx tsc -b conformance-tests backends/process');
  dir = await mkdtemp(join(tmpdir(), 'odyssey-conformance-outputs-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const cli = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CI: '1' },
    timeout: 60_000,
  });

it('--only with --skip runs what is left, and --junit writes one testcase per check of report.json', async () => {
  const junit = join(dir, 'junit.xml');
  const run = cli(
    '--backend',
    'process',
    '--report',
    dir,
    '--only',
    'api',
    'lifecycle',
    '--skip',
    'lifecycle',
    '--junit',
    junit,
  );
  expect(run.status).toBe(0);
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as {
    backends: { checks: { id: string; category: string; status: string }[] }[];
  };
  const checks = report.backends[0]?.checks ?? [];
  expect(new Set(checks.map((c) => c.category))).toEqual(new Set(['api']));
  const xml = await readFile(junit, 'utf8');
  const cases = [...xml.matchAll(/<testcase classname="process\.(\w+)" name="([^"]+)"/g)].map(
    (m) => `${m[1]}:${m[2]}`,
  );
  expect(cases).toEqual(checks.map((c) => `${c.category}:${c.id}`));
  expect(xml).toContain(
    `<testsuite name="process" tests="${checks.length}" failures="0" errors="0" skipped="${checks.filter((c) => c.status === 'unsupported').length}">`,
  );
  const html = await readFile(join(dir, 'report.html'), 'utf8');
  expect(html).toContain('<tr><th>check</th><th>process</th></tr>');
  expect(html).toContain('src="data:image/svg+xml;base64,');
});

it('exits 2 on bad usage, unknown categories included', () => {
  expect(cli('--backend', 'process', '--skip', 'nonsense').status).toBe(2);
  expect(cli('--backend', 'process', '--only', 'api', '--skip', 'api').stderr).toContain(
    'no category left to run',
  );
  expect(cli('--frobnicate').status).toBe(2);
  expect(cli('--help').status).toBe(0);
});

it('exits 3 when the suite cannot run at all', () => {
  const run = cli('--backend', join(dir, 'no-such-backend.js'), '--report', join(dir, 'not-run'));
  expect(run.status).toBe(3);
  expect(run.stderr).toContain('odyssey-conformance: the suite could not run:');
  expect(existsSync(join(dir, 'not-run', 'report.json'))).toBe(false);
});
