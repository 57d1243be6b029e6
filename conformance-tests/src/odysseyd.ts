import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { AdminClient, SocketTransport, parseVmList } from '@odyssey/client';

import { ODYSSEYD, POLICY_TOOL } from './programs.js';
import { QUBES } from './qubes.js';
import { SINK_SERVICE } from './services.js';
import { cleanEnv, run } from './spawn.js';

export interface RunningDaemon {
  readonly stateDir: string;
  readonly socket: string;
  readonly client: AdminClient;
  /** Kills the qubes still running (they outlive the daemon by design), stops odysseyd, removes its files. */
  stop(): Promise<void>;
}

/**
 * The generated default admin policy, plus what the checks need: the management domain may administer
 * what it creates, and test services may be called between the suite's qubes and from dom0.
 */
async function writePolicy(policyDir: string): Promise<void> {
  const generated = await run(process.execPath, [POLICY_TOOL, 'generate-admin', policyDir], cleanEnv());
  if (generated.code !== 0) throw new Error(`odyssey-policy generate-admin failed: ${generated.stderr}`);
  const { mgmt, peer } = QUBES;
  await appendFile(
    join(policyDir, 'include', 'admin-local-rwx'),
    `${mgmt} @tag:created-by-${mgmt} allow target=dom0\n`,
  );
  await appendFile(
    join(policyDir, 'include', 'admin-global-ro'),
    `${mgmt} @adminvm allow target=dom0\n${mgmt} @tag:created-by-${mgmt} allow target=dom0\n`,
  );
  await writeFile(
    join(policyDir, '30-conformance.policy'),
    [
      `admin.vm.Create.AppVM * ${mgmt} @adminvm allow target=dom0`,
      // Any running qube, the disposables included (named once they exist).
      `test.Echo * ${mgmt} @anyvm allow`,
      `test.Sink * ${mgmt} ${peer} allow`,
      `test.Sink * ${mgmt} @adminvm allow target=dom0`,
      // qvm-run.ts: a shell in a running qube and in a disposable made for the call.
      `qubes.VMShell * ${mgmt} ${peer} allow`,
      `qubes.VMShell * ${mgmt} @dispvm:${QUBES.dvmTemplate} allow`,
      // upstream's 90-default.policy: a template announces its features (guest.template-features).
      'qubes.FeaturesRequest * @anyvm dom0 allow',
      '',
    ].join('\n'),
  );
}

/** dom0's own qrexec services the checks call from guests (odysseyd adds its admin.* links beside them). */
async function installDom0Services(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'test.Sink'), SINK_SERVICE);
  await chmod(join(dir, 'test.Sink'), 0o755);
}

/** Polls the socket until odysseyd answers admin.vm.List, or fails with its log when it exits first. */
async function waitReady(daemon: ChildProcess, client: AdminClient, log: () => string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (daemon.exitCode !== null) throw new Error(`odysseyd exited (${daemon.exitCode}): ${log()}`);
    try {
      parseVmList(await client.call('admin.vm.List', 'dom0'));
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`odysseyd did not answer: ${String(err)}\n${log()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/**
 * A fresh state dir has no default_kernel (upstream's installer sets it): pick the first kernel the
 * linux-kernel pool holds, as the installer would, so guests that need one can boot.
 */
async function chooseDefaultKernel(client: AdminClient): Promise<void> {
  const current = (await client.call('admin.property.Get', 'dom0', 'default_kernel')).toString();
  if (!current.endsWith(' ')) return;
  const pools = await client.pools.list();
  if (!pools.includes('linux-kernel')) return;
  const [kernel] = await client.pools.listVolumes('linux-kernel');
  if (kernel) await client.call('admin.property.Set', 'dom0', 'default_kernel', kernel);
}

export interface DaemonOptions {
  readonly backend: string;
  /** Extra environment for odysseyd (e.g. a private libvirtd's socket for kvm). */
  readonly env?: NodeJS.ProcessEnv;
  /** Runs after the state dir exists and before odysseyd starts (e.g. installing a guest kernel). */
  readonly prepare?: (stateDir: string) => Promise<void>;
  /** Appends odysseyd's whole stderr here, for runs whose failures need the daemon's side. */
  readonly logFile?: string;
}

/** The tail of odysseyd's stderr kept to explain a daemon that does not come up. */
const LOG_TAIL = 64 * 1024;

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const root = await mkdtemp(join(tmpdir(), 'odyssey-conformance-'));
  const stateDir = join(root, 'state');
  const socket = join(root, 'qubesd.sock');
  const policyDir = join(root, 'policy.d');
  const serviceDir = join(root, 'qrexec-services');
  const client = new AdminClient(new SocketTransport(socket));
  let daemon: ChildProcess | undefined;
  try {
    // A VMM that runs guests as its own user (libvirt's qemu) must reach the volumes under the state dir.
    await chmod(root, 0o755);
    await writePolicy(policyDir);
    await installDom0Services(serviceDir);
    await options.prepare?.(stateDir);
    let stderr = '';
    daemon = spawn(
      process.execPath,
      [
        ODYSSEYD,
        // The host's /etc/odyssey/odysseyd.conf (an installed package) must not change the daemon under test.
        '--config',
        '/dev/null',
        '--backend',
        options.backend,
        '--state-dir',
        stateDir,
        '--socket',
        socket,
        '--policy-dir',
        policyDir,
        '--legacy-policy-dir',
        join(root, 'qubes-rpc-policy'),
        '--qrexec-services',
        serviceDir,
      ],
      { env: { ...cleanEnv(), ...options.env }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    daemon.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-LOG_TAIL)));
    if (options.logFile) daemon.stderr?.pipe(createWriteStream(options.logFile, { flags: 'a' }));
    await waitReady(daemon, client, () => stderr);
    await chooseDefaultKernel(client);
  } catch (err) {
    daemon?.kill('SIGKILL');
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  const child = daemon;
  return {
    stateDir,
    socket,
    client,
    stop: async () => {
      if (child.exitCode === null) {
        const running = parseVmList(await client.call('admin.vm.List', 'dom0')).filter(
          (vm) => vm.klass !== 'AdminVM' && vm.state !== 'Halted',
        );
        for (const vm of running) await client.call('admin.vm.Kill', vm.name).catch(() => undefined);
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}
