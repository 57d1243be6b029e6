/**
 * The third-party path end to end: a backend package directory (fixtures/acme-backend) that
 * declares its host set-up in package.json, run with `--backend <directory>` as its author would.
 * No guests: its Vmm keeps books. Needs `npx tsc -b conformance-tests` first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const PACKAGE = fileURLToPath(new URL('fixtures/acme-backend', import.meta.url));

let dir = '';
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('build first: npx tsc -b conformance-tests');
});
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = '';
});

interface Report {
  backends: {
    backend: string;
    declared: { module: string; isolation: string; capabilities: Record<string, string> };
    checks: { id: string; status: string; reason: string }[];
  }[];
}

it("runs a package directory's declared host set-up, reports it under its declared name, and judges it", async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-third-party-'));
  const ledger = join(dir, 'ledger');
  const run = spawnSync(
    process.execPath,
    [CLI, '--backend', PACKAGE, '--report', join(dir, 'out'), '--only', 'hal,qrexec'],
    // Where the package's set-up script prepares the host (its default is a system directory).
    { encoding: 'utf8', env: { ...process.env, CI: '1', ACME_LEDGER_ROOT: ledger }, timeout: 60_000 },
  );
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);

  // The set-up script ran and made its file; its `ledger=` line reached the backend as
  // ACME_LEDGER_DIR (with the declared env beside it, or open() would have refused), both in the
  // suite's own instance (opened, then reopened by hal.close-reopen) and in odysseyd's.
  expect(await readFile(join(ledger, 'host-ready'), 'utf8')).toBe(
    'host prepared by scripts/prepare-host.sh\n',
  );
  const opens = (await readFile(join(ledger, 'opens'), 'utf8')).trim().split('\n');
  expect(opens).toHaveLength(3);
  expect(new Set(opens).size).toBe(2);

  const report = JSON.parse(await readFile(join(dir, 'out', 'report.json'), 'utf8')) as Report;
  expect(report.backends.map((b) => b.backend)).toEqual(['acme-ledger']);
  const [acme] = report.backends;
  expect(acme?.declared).toMatchObject({ module: PACKAGE, isolation: 'process' });
  expect(acme?.declared.capabilities['suspend']).toBe('unsupported: books cannot be saved to disk');
  expect(await readFile(join(dir, 'out', 'report.md'), 'utf8')).toContain('acme-ledger');

  const status = Object.fromEntries((acme?.checks ?? []).map((c) => [c.id, c.status]));
  for (const id of ['start', 'stats', 'pause-unpause', 'declared-unsupported-refused', 'close-reopen'])
    expect(status[`hal.${id}`], id).toBe('pass');
  for (const id of ['shutdown', 'kill', 'undefine']) expect(status[`hal.${id}`], id).toBe('pass');
  expect(status['hal.suspend-resume']).toBe('unsupported');
  const qrexec = (acme?.checks ?? []).filter((c) => c.id.startsWith('qrexec.'));
  expect(qrexec.length).toBeGreaterThan(0);
  for (const c of qrexec) expect(c.reason, c.id).toMatch(/^declared: /);
  expect(Object.values(status)).not.toContain('fail');
});
