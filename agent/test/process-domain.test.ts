import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QrexecDaemon } from '@odyssey/qrexec';
import { SocketVchanTransport } from '@odyssey/vchan';
import { allowTo, QrexecWorld } from './fixture.js';

const dist = (file: string): string => fileURLToPath(new URL(`../dist/${file}`, import.meta.url));
const AGENT = dist('agent-main.js');
const CLIENT = dist('client-vm-main.js');

let world: QrexecWorld;
let agent: ChildProcess | undefined;
let daemon: QrexecDaemon | undefined;

interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function run(file: string, args: string[], stdin: string): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

beforeEach(async () => {
  // These tests run the built entry points, as a process domain runs them.
  if (!existsSync(AGENT) || !existsSync(CLIENT)) throw new Error('build the agent first: npx tsc -b agent');
  world = await QrexecWorld.create();
});

afterEach(async () => {
  await daemon?.close();
  daemon = undefined;
  const child = agent;
  agent = undefined;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  await world.close();
});

/** Spawns the built agent as process domain `name` (`id`), its sockets and services under the world's root. */
function spawnAgent(
  name: string,
  id: number,
  extraArgs: readonly string[],
  stdio: 'inherit' | 'pipe' | 'ignore',
): { trigger: string; child: ChildProcess } {
  const trigger = `${world.root}/${name}-agent.sock`;
  const child = spawn(
    process.execPath,
    [
      AGENT,
      '--domain-id',
      String(id),
      '--vchan-dir',
      world.vchanDir,
      '--agent-socket',
      trigger,
      '--service-dir',
      `${world.root}/${name}-rpc`,
      '--qubesdb-socket',
      `${world.root}/${name}-qubesdb.sock`,
      ...extraArgs,
    ],
    { stdio },
  );
  agent = child;
  return { trigger, child };
}

async function startProcessDomain(
  name: string,
  id: number,
  extraArgs: readonly string[] = [],
  stdio: 'inherit' | 'pipe' = 'inherit',
): Promise<{ trigger: string; serviceDir: string; daemon: QrexecDaemon; child: ChildProcess }> {
  const serviceDir = `${world.root}/${name}-rpc`;
  await mkdir(serviceDir);
  const { trigger, child } = spawnAgent(name, id, extraArgs, stdio);
  const started = new QrexecDaemon({
    domain: { name, id },
    transport: new SocketVchanTransport({ localDomain: '0', dir: world.vchanDir }),
    policy: (request) => world.policy(request),
    serviceDirs: [world.dom0ServiceDir],
    connectTimeoutMs: 10_000,
  });
  daemon = started;
  await started.start();
  return { trigger, serviceDir, daemon: started, child };
}

describe('a process domain running the built agent and qrexec-client-vm', () => {
  it('calls a dom0 socket service and exits with its code', async () => {
    const { trigger } = await startProcessDomain('proc', 9);
    const service = await world.addSocketService('test.Echo', (received) => received);
    world.policy = allowTo('dom0');
    const client = ['--domain-id', '9', '--vchan-dir', world.vchanDir, '--agent-socket', trigger];
    const result = await run(CLIENT, [...client, 'dom0', 'test.Echo+arg'], 'payload');
    expect((await service.received).toString()).toBe('test.Echo+arg proc name dom0\0payload');
    expect(result).toEqual({ code: 0, stdout: 'test.Echo+arg proc name dom0\0payload', stderr: '' });
  });

  it('prints "Request refused" and exits 126 when the policy denies', async () => {
    const { trigger } = await startProcessDomain('proc', 9);
    const client = ['--domain-id', '9', '--vchan-dir', world.vchanDir, '--agent-socket', trigger];
    expect(await run(CLIENT, [...client, 'dom0', 'test.Echo'], '')).toEqual({
      code: 126,
      stdout: '',
      stderr: 'Request refused\n',
    });
  });

  it('with --vchan-proxy, lets qrexec-client-vm call through the agent without the vchan dir', async () => {
    // The Debian template in an lxc container: the vchan dir is the domain root's alone, so a call
    // made as user opens its vchans through the agent's proxy socket instead.
    const proxy = `${world.root}/proc-vchan-proxy`;
    const { trigger } = await startProcessDomain('proc', 9, ['--vchan-proxy', proxy]);
    const service = await world.addSocketService('test.Echo', (received) => received);
    world.policy = allowTo('dom0');
    const client = ['--vchan-proxy', proxy, '--agent-socket', trigger];
    const result = await run(CLIENT, [...client, 'dom0', 'test.Echo+arg'], 'payload');
    expect((await service.received).toString()).toBe('test.Echo+arg proc name dom0\0payload');
    expect(result).toEqual({ code: 0, stdout: 'test.Echo+arg proc name dom0\0payload', stderr: '' });
  });

  it('serves dom0 calls into the domain', async () => {
    const { serviceDir, daemon } = await startProcessDomain('proc', 9);
    await world.addScript(serviceDir, 'test.Upper', '#!/bin/sh\ntr a-z A-Z\nexit 7\n');
    const result = await daemon.callService('test.Upper', { stdin: Buffer.from('shout') });
    expect(result).toEqual({ stdout: Buffer.from('SHOUT'), stderr: Buffer.alloc(0), exitCode: 7 });
  });

  it('keeps serving once its console is gone (writes fail with EPIPE), and a SIGTERM still ends it with 0', async () => {
    const { serviceDir, daemon, child } = await startProcessDomain('proc', 9, [], 'pipe');
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    while (!stdout.includes('ODYSSEY-QREXEC-READY\n')) await new Promise((r) => setTimeout(r, 20));
    // As libvirt's LXC controller closes a container's console pty while the container still runs.
    child.stdout?.destroy();
    child.stderr?.destroy();
    await world.addScript(serviceDir, 'test.Upper', '#!/bin/sh\ntr a-z A-Z\n');
    const result = await daemon.callService('test.Upper', { stdin: Buffer.from('still here') });
    expect(result.stdout.toString()).toBe('STILL HERE');
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    );
    // dom0 gone, its stop logs that the control vchan ended: a write to the closed console.
    await daemon.close();
    child.kill('SIGTERM');
    expect(await exited).toEqual([0, null]);
  });

  it('stops with 0 on a SIGTERM sent the moment its qrexec-client-vm socket appears (the process backend calls it started then)', async () => {
    await mkdir(`${world.root}/early-rpc`);
    const watcher = watch(world.root);
    const { child } = spawnAgent('early', 11, [], 'ignore');
    const exited = new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (code, signal) => resolve([code, signal])),
    );
    watcher.on('change', (_event, file) => {
      if (file !== 'early-agent.sock') return;
      watcher.close();
      child.kill('SIGTERM');
    });
    expect(await exited).toEqual([0, null]);
  });
});
