/**
 * Preloaded disposables end to end: odysseyd on the process backend keeps a
 * disposable of `work` started and frozen (SIGSTOP) ahead; `qvm run --dispvm`
 * gets that one (CreateDisposable takes it), the pool refills with a new one,
 * and a preload killed from outside leaves the pool and qubes.xml.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killLeftoverDomains } from './support/leftover-domains.js';
import { cleanEnv, runNode, type Finished } from './support/node-run.js';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const QVM = repo('client/dist/cli/main.js');
const BUILT = [ODYSSEYD, QVM, repo('backends/process/dist/index.js')];

let root: string;
let stateDir: string;
let socket: string;
let daemon: ChildProcess;
let daemonLog = '';

const qvm = (...args: string[]): Promise<Finished> =>
  runNode([QVM, '--socket', socket, ...args], {
    ...cleanEnv(),
    // qvm run reaches the domain through this daemon's qrexec sockets.
    ODYSSEY_QREXEC_SOCKET_DIR: join(stateDir, 'run'),
  });

async function ok(...args: string[]): Promise<string> {
  const r = await qvm(...args);
  expect(r, `qvm ${args.join(' ')}`).toMatchObject({ code: 0, stderr: '' });
  return r.stdout;
}

/** Yields until `condition` holds; the test's timeout bounds it, so a loaded machine only makes it slower. */
async function waitFor(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

async function feature(vm: string, name: string): Promise<string | null> {
  const r = await qvm('features', vm, name);
  return r.code === 0 ? r.stdout.trimEnd() : null;
}

async function pool(): Promise<string[]> {
  const v = await feature('work', 'preload-dispvm');
  return v ? v.split(' ') : [];
}

/** The pool holds one preload that completed (started, then paused); its name. */
async function onePreloaded(): Promise<string> {
  let name = '';
  await waitFor(async () => {
    [name = ''] = await pool();
    return name !== '' && (await feature(name, 'preload-dispvm-completed')) === '1';
  });
  return name;
}

/** The kernel's state letter of the domain's process ('T' once SIGSTOPped). */
async function processState(vm: string): Promise<string> {
  const record = await readFile(join(stateDir, 'run', 'process', vm, 'domain.json'), 'utf8');
  const { pid } = JSON.parse(record) as { pid: number };
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

const listed = async (vm: string): Promise<boolean> =>
  (await ok('ls', '--raw-list')).split('\n').includes(vm);

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npm run build): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-preload-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  await mkdir(join(root, 'policy.d'), { recursive: true });
  daemon = spawn(
    process.execPath,
    [
      ODYSSEYD,
      ...['--config', '/dev/null', '--backend', 'process', '--state-dir', stateDir, '--socket', socket],
      ...['--policy-dir', join(root, 'policy.d'), '--legacy-policy-dir', join(root, 'legacy')],
    ],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  daemon.stderr?.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  await waitFor(() => daemonLog.includes('backend process connected') || daemon.exitCode !== null);
  expect(daemonLog).toContain('backend process connected');
  await ok('create', '--class', 'TemplateVM', '--label', 'black', 'tpl');
  // The agent answers qubes.WaitForRunningSystem itself; WaitForSession, needed only with a GUI, is never
  // called here. The template announces both, as upstream's tools do.
  for (const f of [
    'qrexec',
    'supported-rpc.qubes.WaitForRunningSystem',
    'supported-rpc.qubes.WaitForSession',
  ])
    await ok('features', 'tpl', f, '1');
  await ok('create', '--label', 'red', '--template', 'tpl', 'work');
  await ok('prefs', 'work', 'template_for_dispvms', 'True');
  await ok('features', 'work', 'preload-dispvm-delay', '0');
}, 120_000);

afterAll(async () => {
  if (!root) return;
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await killLeftoverDomains(stateDir);
  await rm(root, { recursive: true, force: true });
});

/**
 * The qubes.xml odysseyd would start from: its journal's last whole record (core's own reader,
 * from the build the test runs), else qubes.xml, which lags the journal until a checkpoint.
 */
async function persistedXml(): Promise<string> {
  const { replayJournal } = (await import(repo('core/dist/persist/journal.js'))) as {
    replayJournal(bytes: Buffer): { readonly document: string | null };
  };
  const journal = await readFile(join(stateDir, 'qubes.xml.journal')).catch(() => Buffer.alloc(0));
  return replayJournal(journal).document ?? (await readFile(join(stateDir, 'qubes.xml'), 'utf8'));
}

describe('preloaded disposables on the process backend', () => {
  let first = '';

  it('keeps one disposable started and frozen once preload-dispvm-max is set', async () => {
    await ok('features', 'work', 'preload-dispvm-max', '1');
    first = await onePreloaded();
    expect(await processState(first)).toBe('T');
    // Paused only once its system runs: the agent answered qubes.WaitForRunningSystem (its built-in).
    expect(daemonLog).toContain(
      `${first}: preload startup waiting 'qubes.WaitForRunningSystem' with '60' seconds timeout`,
    );
    expect(daemonLog).toContain(`${first}: preload startup completed 'qubes.WaitForRunningSystem'`);
    expect(await feature(first, 'internal')).toBe('1');
    // admin.vm.List shows it, as upstream: GUI tools hide it by the internal feature.
    expect(await listed(first)).toBe(true);
  }, 60_000);

  it('qvm run --dispvm runs in the preloaded qube, which is gone afterwards, and the pool refills', async () => {
    const r = await qvm('run', '--dispvm=work', '--pass-io', 'echo shell-ran');
    expect(r).toEqual({ code: 0, stdout: 'shell-ran\n', stderr: '' });
    expect(daemonLog).toContain(`${first}: preloaded disposable requested`);
    await waitFor(async () => !(await listed(first)));
    const next = await onePreloaded();
    expect(next).not.toBe(first);
    expect(await processState(next)).toBe('T');
  }, 60_000);

  it('a preload killed from outside leaves the pool and qubes.xml', async () => {
    const [victim = ''] = await pool();
    const record = await readFile(join(stateDir, 'run', 'process', victim, 'domain.json'), 'utf8');
    process.kill(-(JSON.parse(record) as { pid: number }).pid, 'SIGKILL');
    await waitFor(async () => !(await listed(victim)));
    expect(await pool()).not.toContain(victim);
    expect(await persistedXml()).not.toContain(`name="${victim}"`);
  }, 60_000);

  it('a preload whose system does not come up is removed, with the service output sanitized', async () => {
    // A service file of that name wins over the agent's built-in, as a guest image's own would.
    const failing = join(stateDir, 'run', 'qubes-rpc', 'qubes.WaitForRunningSystem');
    await writeFile(failing, "#!/bin/sh\necho starting\nprintf 'degraded\\n\\033[31m' >&2\nexit 1\n", {
      mode: 0o755,
    });
    await ok('features', 'work', 'preload-dispvm-max', '2');
    const message =
      "Error on call to 'qubes.WaitForRunningSystem' during preload startup: starting_degraded__[31m";
    await waitFor(() => daemonLog.includes(message));
    await waitFor(async () => (await pool()).length === 0);
    const disposables = (await ok('ls', '--raw-data', '--fields', 'name,class'))
      .split('\n')
      .filter((line) => line.endsWith('|DispVM'));
    expect(disposables).toEqual([]);
  }, 60_000);

  it('a preload taken while it waits for its system is used at once, never paused', async () => {
    const hanging = join(stateDir, 'run', 'qubes-rpc', 'qubes.WaitForRunningSystem');
    await writeFile(hanging, '#!/bin/sh\nexec sleep 600\n');
    // Its disposables wait up to 300 s, longer than a test may take (see the next test).
    await ok('prefs', 'work', 'qrexec_timeout', '300');
    await ok('features', 'work', 'preload-dispvm-max', '1');
    let name = '';
    await waitFor(async () => {
      [name = ''] = await pool();
      return name !== '' && daemonLog.includes(`${name}: preload startup waiting`);
    });
    const r = await qvm('run', '--dispvm=work', '--pass-io', 'echo shell-ran');
    expect(r).toEqual({ code: 0, stdout: 'shell-ran\n', stderr: '' });
    expect(daemonLog).toContain(`${name}: preloaded disposable requested`);
    expect(daemonLog).not.toContain(`${name}: preload startup completed`);
  }, 60_000);

  it("the daemon's stop ends a preload's wait instead of sitting out its qrexec_timeout", async () => {
    // The refill that followed the last request waits as well, for up to 300 s.
    let next = '';
    await waitFor(async () => {
      [next = ''] = await pool();
      return (
        next !== '' &&
        daemonLog.includes(`${next}: preload startup waiting 'qubes.WaitForRunningSystem' with '300'`)
      );
    });
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
    expect(daemonLog).toContain(`${next}: preloading failed: preloading interrupted: the daemon is stopping`);
  }, 60_000);
});
