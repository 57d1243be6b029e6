/**
 * QubesDB end to end on the process backend: odysseyd serves a started
 * domain its database over vchan, the domain's agent keeps a copy, and the
 * domain's programs read it with qubesdb-read / qubesdb-list / qubesdb-watch
 * (run here as qrexec services in the domain, as `qvm-run` would run them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killLeftoverDomains } from './support/leftover-domains.js';
import { startProcessOdysseyd } from './support/odysseyd.js';
import { cleanEnv } from './support/node-run.js';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const QREXEC_CLIENT = repo('core/dist/daemon/qrexec-client-main.js');
const QVM = repo('client/dist/cli/main.js');
const QUBESDB_CMD = repo('agent/dist/qubesdb-cmd-main.js');
const BUILT = [ODYSSEYD, QREXEC_CLIENT, QVM, QUBESDB_CMD, repo('backends/process/dist/index.js')];

interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(args: readonly string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let root: string;
let stateDir: string;
let socket: string;
let bin: string;
let daemon: ChildProcess;

const dom0 = (...args: string[]): Promise<Finished> => run([QVM, '--socket', socket, ...args]);
/** Runs `qubesdb-<what>` in the domain through the test.Qdb service. */
const inGuest = (what: string): Promise<Finished> =>
  run([QREXEC_CLIENT, '--socket-dir', join(stateDir, 'run'), 'work', `test.Qdb+${what}`]);

async function waitFor(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npm run build): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-qubesdb-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  // upstream's command names, each a link to the one program (it reads its name).
  bin = join(root, 'bin');
  await mkdir(bin);
  for (const name of ['qubesdb-read', 'qubesdb-list', 'qubesdb-watch'])
    await symlink(QUBESDB_CMD, join(bin, name));
  const policyDir = join(root, 'policy.d');
  await mkdir(policyDir, { recursive: true });
  ({ child: daemon } = await startProcessOdysseyd({ root, stateDir, socket, policyDir }));
  const ok = { code: 0, stdout: '', stderr: '' };
  expect(await dom0('create', '--class', 'TemplateVM', '--label', 'black', 'tpl')).toEqual(ok);
  expect(await dom0('create', '--label', 'red', '--template', 'tpl', 'work')).toEqual(ok);
  const services = join(stateDir, 'run', 'process', 'work', 'qubes-rpc');
  await mkdir(services, { recursive: true });
  const node = process.execPath;
  await writeFile(
    join(services, 'test.Qdb'),
    [
      '#!/bin/sh',
      'case "$1" in',
      `  name) exec "${node}" "${bin}/qubesdb-read" /name ;;`,
      `  cups) exec "${node}" "${bin}/qubesdb-read" /qubes-service/cups ;;`,
      `  services) exec "${node}" "${bin}/qubesdb-list" /qubes-service/ ;;`,
      `  watch) exec "${node}" "${bin}/qubesdb-watch" /qubes-service/cups ;;`,
      'esac',
      '',
    ].join('\n'),
  );
  await chmod(join(services, 'test.Qdb'), 0o755);
  expect(await dom0('start', 'work')).toEqual(ok);
}, 60_000);

afterAll(async () => {
  if (!root) return;
  if (daemon && daemon.exitCode === null) {
    await dom0('kill', 'work');
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await killLeftoverDomains(stateDir);
  await rm(root, { recursive: true, force: true });
});

describe('QubesDB in a process domain', () => {
  it('qubesdb-read /name prints the domain its name', async () => {
    expect(await inGuest('name')).toEqual({ code: 0, stdout: 'work\n', stderr: '' });
  });

  it('qubesdb-watch sees a service feature being set; qubesdb-read then reads it, and exits 2 once removed', async () => {
    expect(await inGuest('cups')).toEqual({
      code: 2,
      stdout: '',
      stderr: 'Failed to read /qubes-service/cups\n',
    });
    const watch = inGuest('watch');
    let done = false;
    void watch.then(() => (done = true));
    // The watch may not be registered yet when a set happens: set again until it has fired.
    await waitFor(async () => {
      if (!done) expect((await dom0('features', 'work', 'service.cups', '1')).code).toBe(0);
      return done;
    });
    expect(await watch).toEqual({ code: 0, stdout: '/qubes-service/cups\n', stderr: '' });
    expect(await inGuest('cups')).toEqual({ code: 0, stdout: '1\n', stderr: '' });
    expect((await inGuest('services')).stdout).toBe('cups\nmeminfo-writer\n');
    expect((await dom0('features', '--unset', 'work', 'service.cups')).code).toBe(0);
    await waitFor(async () => (await inGuest('cups')).code === 2);
  });

  it("dom0 reads the domain's database with qubesdb-read -d", async () => {
    const reply = await run([join(bin, 'qubesdb-read'), '-d', 'work', '-f', '/qubes-vm-type'], {
      ...cleanEnv(),
      QUBESDB_SOCKET_DIR: join(stateDir, 'run'),
    });
    expect(reply).toEqual({ code: 0, stdout: '/qubes-vm-type = AppVM\n', stderr: '' });
  });
});
