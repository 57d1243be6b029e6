/**
 * `ask` end to end: odysseyd on the process backend, a qube calling a dom0
 * service through its own qrexec-client-vm, and odyssey-policy-agent as a
 * real process whose stdin is the person answering.
 */
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killLeftoverDomains } from './support/leftover-domains.js';
import { cleanEnv, runNode, type Finished } from './support/node-run.js';

const repo = (path: string): string => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const ODYSSEYD = repo('core/dist/daemon/main.js');
const QVM = repo('client/dist/cli/main.js');
const QREXEC_CLIENT_VM = repo('agent/dist/client-vm-main.js');
const POLICY_AGENT = repo('qrexec/dist/policy/agent-main.js');
const BUILT = [ODYSSEYD, QVM, QREXEC_CLIENT_VM, POLICY_AGENT, repo('backends/process/dist/index.js')];

let root: string;
let stateDir: string;
let socket: string;
let daemon: ChildProcess;
let daemonLog = '';
let agent: ChildProcessWithoutNullStreams | undefined;
let agentOutput = '';

const dom0 = (...args: string[]): Promise<Finished> =>
  runNode([QVM, '--socket', socket, ...args], cleanEnv());

async function callFromWork(service: string): Promise<Finished> {
  const xid = (await dom0('prefs', 'work', 'xid')).stdout.trim();
  const runtime = join(stateDir, 'run');
  return runNode([QREXEC_CLIENT_VM, 'dom0', service], {
    ...cleanEnv(),
    VCHAN_DOMAIN: xid,
    VCHAN_SOCKET_DIR: join(runtime, 'vchan'),
    QREXEC_AGENT_SOCKET: join(runtime, 'process', 'work', 'qrexec-agent.sock'),
  });
}

/** Resolves once `text` is in `read()` past `from`, re-checking whenever `stream` says more. */
async function until(
  stream: NodeJS.ReadableStream,
  read: () => string,
  text: string,
  from = 0,
): Promise<void> {
  while (read().indexOf(text, from) < 0) await once(stream, 'data');
}

async function startAgent(): Promise<void> {
  agentOutput = '';
  agent = spawn(process.execPath, [POLICY_AGENT, '--socket', join(stateDir, 'run', 'policy-agent.sock')], {
    env: cleanEnv(),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  agent.stdout.on('data', (chunk: Buffer) => (agentOutput += chunk.toString()));
  await until(agent.stdout, () => agentOutput, 'answering on');
}

const PROMPT = 'allow to which target?';

function running(): ChildProcessWithoutNullStreams {
  if (!agent) throw new Error('the agent is not running');
  return agent;
}

beforeAll(async () => {
  const missing = BUILT.filter((file) => !existsSync(file));
  if (missing.length > 0) throw new Error(`build first (npm run build): ${missing.join(', ')}`);
  root = await mkdtemp(join(tmpdir(), 'odyssey-ask-'));
  stateDir = join(root, 'state');
  socket = join(root, 'qubesd.sock');
  const policyDir = join(root, 'policy.d');
  await mkdir(policyDir, { recursive: true });
  await writeFile(
    join(policyDir, '30-ask.policy'),
    'test.Hello * work @adminvm ask default_target=dom0\ntest.Hello * @anyvm @anyvm deny\n',
  );
  // dom0's service, in the daemon's qrexec service directory.
  const services = join(stateDir, 'qrexec-services');
  await mkdir(services, { recursive: true });
  await writeFile(join(services, 'test.Hello'), '#!/bin/sh\necho "hello $QREXEC_REMOTE_DOMAIN"\n');
  await chmod(join(services, 'test.Hello'), 0o755);
  daemon = spawn(
    process.execPath,
    [
      ODYSSEYD,
      ...['--config', '/dev/null', '--backend', 'process', '--state-dir', stateDir, '--socket', socket],
      ...['--policy-dir', policyDir, '--legacy-policy-dir', join(root, 'legacy')],
    ],
    { env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stderr = daemon.stderr;
  if (!stderr) throw new Error('no daemon stderr');
  stderr.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  await Promise.race([until(stderr, () => daemonLog, 'backend process connected'), once(daemon, 'exit')]);
  expect(daemonLog).toContain('backend process connected');
  const ok = { code: 0, stdout: '', stderr: '' };
  expect(await dom0('create', '--class', 'TemplateVM', '--label', 'black', 'tpl')).toEqual(ok);
  expect(await dom0('create', '--label', 'red', '--template', 'tpl', 'work')).toEqual(ok);
  expect(await dom0('start', 'work')).toEqual(ok);
}, 60_000);

afterAll(async () => {
  if (!root) return;
  if (agent && agent.exitCode === null) {
    agent.kill('SIGKILL');
    await once(agent, 'exit');
  }
  if (daemon && daemon.exitCode === null) {
    await dom0('kill', 'work');
    const exited = once(daemon, 'exit');
    daemon.kill('SIGTERM');
    await exited;
  }
  await killLeftoverDomains(stateDir);
  await rm(root, { recursive: true, force: true });
});

describe('qrexec ask through odyssey-policy-agent', () => {
  it('with no agent running the call is refused, and the log says why', async () => {
    expect(await callFromWork('test.Hello')).toEqual({ code: 126, stdout: '', stderr: 'Request refused\n' });
    expect(daemonLog).toContain(
      `qrexec policy: no policy agent is running (${join(stateDir, 'run', 'policy-agent.sock')})`,
    );
  });

  it('the agent shows the question; Enter allows the default target and the service runs', async () => {
    await startAgent();
    const from = agentOutput.length;
    const call = callFromWork('test.Hello');
    await until(running().stdout, () => agentOutput, PROMPT, from);
    expect(agentOutput.slice(from)).toContain(
      [
        '  source:   work',
        '  service:  test.Hello',
        '  argument: +',
        '  targets:',
        '    1) dom0',
        '  default:  dom0',
      ].join('\n'),
    );
    running().stdin.write('\n');
    expect(await call).toEqual({ code: 0, stdout: 'hello work\n', stderr: '' });
    expect(daemonLog).toContain('qrexec policy: work -> dom0 test.Hello: the user allowed target dom0');
  });

  it('n denies the call', async () => {
    const from = agentOutput.length;
    const call = callFromWork('test.Hello');
    await until(running().stdout, () => agentOutput, PROMPT, from);
    running().stdin.write('n\n');
    expect(await call).toEqual({ code: 126, stdout: '', stderr: 'Request refused\n' });
    expect(daemonLog).toContain('qrexec policy: denied by the user');
  });
});
