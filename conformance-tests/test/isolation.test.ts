/**
 * The isolation category on the process backend: reported unsupported by its declared class
 * through the CLI; and, as a negative control, the same domains declared a `container` (a lie),
 * where every check that probes a separation must fail, naming what crossed it. The fork bomb is
 * left out of the control: on process domains it would be a real one on the host.
 * Needs `npx tsc -b conformance-tests backends/process` first.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { openBackendUnderTest, type BackendUnderTest } from '../src/backend-under-test.js';
import { runCheck, type CheckContext, type CheckResult } from '../src/check.js';
import { isolationChecks } from '../src/checks/isolation.js';
import { lifecycleChecks } from '../src/checks/lifecycle.js';
import { processGuests } from '../src/guests.js';
import { startDaemon, type RunningDaemon } from '../src/odysseyd.js';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const cleanups: (() => Promise<void>)[] = [];

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error('build first: npx tsc -b conformance-tests backends/process');
});
afterAll(async () => {
  for (const step of cleanups.reverse()) await step();
});

it('reports every isolation check on process unsupported, by the declared class', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-isolation-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const run = spawnSync(
    process.execPath,
    [CLI, '--backend', 'process', '--report', dir, '--only', 'isolation'],
    {
      encoding: 'utf8',
      env: { ...process.env, CI: '1' },
      timeout: 120_000,
    },
  );
  expect(run.status, run.stderr).toBe(0);
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as {
    backends: { checks: CheckResult[] }[];
  };
  const isolation = (report.backends[0]?.checks ?? []).filter((c) => c.category === 'isolation');
  expect(isolation.map((c) => c.id)).toEqual(isolationChecks.map((c) => c.id));
  for (const check of isolation) {
    expect(check.status, check.id).toBe('unsupported');
    expect(check.reason, check.id).toMatch(
      /^declared: isolation class process: (a domain is a dom0 process|every domain.s vchan sockets)/,
    );
  }
});

it('fails each separation a process domain does not have when it is declared a container', async () => {
  const daemon: RunningDaemon = await startDaemon({ backend: 'process' });
  cleanups.push(daemon.stop);
  const underTest = await openBackendUnderTest('process', () => undefined);
  cleanups.push(() => underTest.close());
  const caps = { ...underTest.capabilities, isolation: 'container' as const };
  const lying: BackendUnderTest = { ...underTest, capabilities: caps };
  const ctx: CheckContext = {
    backend: lying,
    socket: daemon.socket,
    client: daemon.client,
    guests: processGuests(daemon.stateDir, daemon.client),
    metrics: {},
  };
  for (const id of ['lifecycle.create-qubes', 'lifecycle.start-guests']) {
    const setup = lifecycleChecks.find((c) => c.id === id);
    if (!setup) throw new Error(`no ${id}`);
    expect(await runCheck(setup, ctx, caps), id).toMatchObject({ status: 'pass' });
  }
  const expected: Record<string, RegExp> = {
    'isolation.unprivileged-host-uid': /^processes of conf-peer run as host uid 0\b/,
    'isolation.sees-only-own-processes': /got \["conf-peer","conf-mgmt","dom0"\]$/,
    'isolation.no-dom0-or-other-domain-files': /got "listed .*\\nread .*\/qubes\.xml\\n/,
    'isolation.no-other-domain-vchan': /got "connected /,
    'isolation.memory-limit': /^conf-isolated allocated 656 MiB, over its memory of 400 MiB$/,
  };
  for (const [id, reason] of Object.entries(expected)) {
    const check = isolationChecks.find((c) => c.id === id);
    if (!check) throw new Error(`no ${id}`);
    const result = await runCheck(check, ctx, caps);
    expect(result.status, `${id}: ${result.reason}`).toBe('fail');
    expect(result.reason, id).toMatch(reason);
  }
}, 180_000);
