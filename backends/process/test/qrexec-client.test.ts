/**
 * dom0's qrexec client: odysseyd on the process backend serves a local socket
 * `<state dir>/run/qrexec.<name>` per running domain, and odyssey-qrexec-client
 * calls a service in the domain through it, as upstream's
 * `qrexec-client -d VM DEFAULT:QUBESRPC SERVICE+ARG dom0` does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
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
const BUILT = [ODYSSEYD, QREXEC_CLIENT, QVM, repo('backends/process/dist/index.js')];

interface Finished {
  readonly code: number | null;
  readonly stdout: Buffer;
  readonly stderr: string;
}

function run(args: readonly string[], stdin: string | Buffer = ''): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: cleanEnv(), stdio: 'pipe' });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

let root: string;
let stateDir: string;
let socket: string;
let daemon: ChildProcess;

const dom0 = (...args: string[]): Promise<Finished> => run([QVM, '--socket', socket, ...args]);
const client = (vm: string, service: string, stdin: string | Buffer = ''): Promise<Finished> =>
  run([QREXEC_CLIENT, '--socket-dir', join(stateDir, 'run'), vm, service], stdin);

async function installService(vm: string, service: string, script: string): Promise<void> {
  const dir = join(stateDir, 'run', 'process', vm, 'qubes-rpc');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, service), script);
  await chmod(join(dir, service), 0o755);
}

/** Yields until `condition` holds; the test's timeout bounds it, so a loaded machine only makes it slower. */
async function waitFor(condition: () => Promise<boolean> | boolean): Promise<void> {
  while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
}

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npm run build): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-qclient-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  const policyDir = join(root, 'policy.d');
  await mkdir(policyDir, { recursive: true });
  ({ child: daemon } = await startProcessOdysseyd({ root, stateDir, socket, policyDir }));
  const ok = { code: 0, stdout: Buffer.alloc(0), stderr: '' };
  expect(await dom0('create', '--class', 'TemplateVM', '--label', 'black', 'tpl')).toEqual(ok);
  expect(await dom0('create', '--label', 'red', '--template', 'tpl', 'work')).toEqual(ok);
  await installService(
    'work',
    'test.Echo',
    '#!/bin/sh\nprintf "%s %s from %s: " "$QREXEC_SERVICE_FULL_NAME" "$1" "$QREXEC_REMOTE_DOMAIN"\ncat\necho oops >&2\n',
  );
  await installService('work', 'test.Exit', '#!/bin/sh\nexit "$1"\n');
  await installService('work', 'test.Sha', '#!/bin/sh\nsha256sum | cut -d" " -f1\n');
  expect(await dom0('start', 'work')).toEqual(ok);
}, 30_000);

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

describe('odyssey-qrexec-client', () => {
  const local = (): string => join(stateDir, 'run', 'qrexec.work');

  it('finds a 0600 local socket per running domain', async () => {
    await waitFor(() => existsSync(local()));
    expect((await stat(local())).mode & 0o777).toBe(0o600);
  });

  it('passes stdin to the service and its stdout, stderr and exit code back', async () => {
    const reply = await client('work', 'test.Echo+arg1', 'hello\0bytes');
    expect(reply.stdout.toString()).toBe('test.Echo+arg1 arg1 from dom0: hello\0bytes');
    expect(reply.stderr).toBe('oops\n');
    expect(reply.code).toBe(0);
  });

  it("exits with the service's exit code, and 127 for a service the domain does not have", async () => {
    expect((await client('work', 'test.Exit+3')).code).toBe(3);
    expect((await client('work', 'test.Exit+0')).code).toBe(0);
    expect((await client('work', 'test.Missing')).code).toBe(127);
  });

  it('streams megabytes both ways intact', async () => {
    const data = randomBytes(8 << 20);
    const reply = await client('work', 'test.Sha', data);
    expect(reply.stdout.toString().trim()).toBe(createHash('sha256').update(data).digest('hex'));
    expect(reply.code).toBe(0);
  });

  it('fails with 125 for a domain that has no socket', async () => {
    const reply = await client('nosuchvm', 'test.Echo');
    expect(reply.code).toBe(125);
    expect(reply.stderr).toContain('nosuchvm');
  });

  it('removes the socket when the domain stops', async () => {
    expect((await dom0('shutdown', '--wait', 'work')).code).toBe(0);
    await waitFor(() => !existsSync(local()));
  });
});
