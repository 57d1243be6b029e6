/**
 * What the lxc tests that run real containers share: the machine probe, the test root tree, the
 * private libvirtd with the LXC driver, and a look inside a running container.
 */
import { execFile } from 'node:child_process';
import { constants, existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReadStream } from 'node:tty';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startDaemon, whyNoDaemon, type TestDaemon } from '../../../../libvirt/test/daemon.js';
import { LxcVmm } from '../../src/lxc-vmm.js';

export const run = promisify(execFile);

/** How much of a domain's console output LxcRig keeps. */
const CONSOLE_KEPT = 16_384;

const BUILD_ROOTFS = fileURLToPath(new URL('../../scripts/build-rootfs.sh', import.meta.url));
const LXC_DRIVER = '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_lxc.so';

/** Why containers cannot run here, with `commands` besides the daemon's; undefined when they can. */
export function whyNoContainers(commands: readonly string[]): string | undefined {
  const noDaemon = whyNoDaemon([...commands]);
  if (noDaemon) return noDaemon;
  if (!existsSync(LXC_DRIVER)) return `no ${LXC_DRIVER}: apt-get install libvirt-daemon-driver-lxc`;
  if (!existsSync('/proc/self/ns/user')) return 'the kernel has no user namespaces';
  return undefined;
}

/** The busybox+node root tree the containers boot (built once, then cached by the script). */
export async function testRootfs(): Promise<string> {
  const { stdout } = await run(BUILD_ROOTFS, [], { timeout: 300_000 });
  const rootDir = /^rootfs=(.*)$/m.exec(stdout)?.[1];
  if (!rootDir) throw new Error(`build-rootfs.sh named no root: ${stdout}`);
  return rootDir;
}

/** A private libvirtd running the LXC driver (scripts/libvirtd-test.sh readies its mount namespace for the driver). */
export function startLxcDaemon(): Promise<TestDaemon> {
  process.env['LIBVIRTD_TEST_LXC'] = '1';
  return startDaemon();
}

/** Every process's pid and argv. */
export async function processes(): Promise<{ pid: number; args: string[] }[]> {
  const all = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline) all.push({ pid: Number(entry), args: cmdline.split('\0').slice(0, -1) });
  }
  return all;
}

/**
 * The host pid of the domain's qrexec agent (its container init's child); just after a start,
 * waited for. `explain` adds what the caller knows of the domain to the error when none comes.
 */
export async function agentPid(name: string, explain?: () => Promise<string>): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const all = await processes();
    const agent = all.find(
      ({ args }) =>
        args.some((a) => a.endsWith('agent-socket.mjs')) && args[args.indexOf('--domain-id') + 1] === name,
    );
    if (agent) return agent.pid;
    if (Date.now() > deadline) {
      // Which part of the container is there (libvirt_lxc, its init) tells a start that failed
      // from an agent that did not come up.
      const related = all
        .filter(({ args }) => args.includes(name))
        .map(({ pid, args }) => `${pid}: ${args.join(' ')}`);
      const known = explain ? `\n${await explain()}` : '';
      throw new Error(
        `no agent process for ${name} after 60 s; processes naming it: ${related.join('; ') || 'none'}${known}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A shell command line run in the container (its namespaces and root, its busybox), as its root; its stdout. */
export async function inContainerSh(name: string, command: string): Promise<string> {
  const pid = await agentPid(name);
  const { stdout } = await run('nsenter', ['-t', String(pid), '-a', '-r', '-w', '/bin/sh', '-c', command], {
    timeout: 60_000,
  });
  return stdout;
}

/**
 * A private libvirtd with the LXC driver and the test root tree, a fresh runtime dir, and the
 * backend opened on them; `stop` kills and undefines the named domains and removes it all.
 */
export class LxcRig {
  /** The last console output of each domain started with startRecorded. */
  readonly #consoles = new Map<string, { text: string; stream?: ReadStream }>();

  private constructor(
    readonly daemon: TestDaemon,
    readonly runtimeDir: string,
    readonly rootDir: string,
    public vmm: LxcVmm,
  ) {}

  static async start(prefix: string): Promise<LxcRig> {
    const rootDir = await testRootfs();
    const daemon = await startLxcDaemon();
    const runtimeDir = await mkdtemp(join(tmpdir(), prefix));
    const rig = new LxcRig(daemon, runtimeDir, rootDir, newVmm(daemon, runtimeDir, rootDir));
    await rig.vmm.open();
    return rig;
  }

  /** Another backend instance on the same daemon and runtime dir (as after odysseyd restarts). */
  newVmm(): LxcVmm {
    return newVmm(this.daemon, this.runtimeDir, this.rootDir);
  }

  /**
   * Starts `name` and keeps what its console prints (its init's and agent's stdout and stderr)
   * for explain: the last words of an agent that dies are there, and gone with its container.
   */
  async startRecorded(name: string): Promise<void> {
    await this.vmm.start(name);
    this.#consoles.get(name)?.stream?.destroy();
    const record: { text: string; stream?: ReadStream } = { text: '' };
    this.#consoles.set(name, record);
    try {
      const fd = openSync(await this.vmm.consolePath(name), constants.O_RDONLY | constants.O_NOCTTY);
      record.stream = new ReadStream(fd);
      record.stream.on('data', (chunk: Buffer) => {
        record.text = (record.text + chunk.toString()).slice(-CONSOLE_KEPT);
      });
      // EIO once the container stops: what it printed is kept.
      record.stream.on('error', () => undefined);
    } catch (error) {
      record.text = `(its console could not be opened: ${String(error)})`;
    }
  }

  /**
   * What there is to know of why `name` is not running: its state, the end of libvirt_lxc's log
   * of it (kept in libvirtd's private /var/log/libvirt), libvirtd's own lines naming it, and the
   * kernel's last words on killed or crashed processes.
   */
  async explain(name: string): Promise<string> {
    const state = await this.vmm.state(name).then(
      (s) => s.state,
      (error: unknown) => String(error),
    );
    const domainLog = await run('nsenter', [
      '-t',
      String(this.daemon.pid),
      '-m',
      'tail',
      '-n',
      '15',
      `/var/log/libvirt/lxc/${name}.log`,
    ]).then(
      ({ stdout }) => stdout,
      (error: unknown) => String(error),
    );
    const daemonLog = (await readFile(join(this.daemon.dir, 'libvirtd.log'), 'utf8').catch(() => ''))
      .split('\n')
      .filter((line) => line.includes(name))
      .slice(-10);
    const kernel = await run('dmesg').then(
      ({ stdout }) =>
        stdout
          .split('\n')
          .filter((line) => /out of memory|oom-kill|segfault|traps:/i.test(line))
          .slice(-5),
      (error: unknown) => [String(error)],
    );
    const printed = this.#consoles.get(name)?.text ?? '(not started with startRecorded)';
    return [
      `state: ${state}`,
      `its console:\n${printed}`,
      `libvirt_lxc's log of ${name}:\n${domainLog}`,
      `libvirtd's lines naming ${name}:\n${daemonLog.join('\n')}`,
      `the kernel on killed or crashed processes:\n${kernel.join('\n')}`,
    ].join('\n');
  }

  async stop(domains: readonly string[]): Promise<void> {
    for (const { stream } of this.#consoles.values()) stream?.destroy();
    for (const name of domains) {
      await this.vmm.kill(name).catch(() => undefined);
      await this.vmm.undefine(name).catch(() => undefined);
    }
    await this.vmm.close();
    await this.daemon.stop();
    await rm(this.runtimeDir, { recursive: true, force: true });
  }
}

function newVmm(daemon: TestDaemon, runtimeDir: string, rootDir: string): LxcVmm {
  return new LxcVmm({
    uri: 'lxc:///system',
    socketPath: daemon.socket,
    runtimeDir,
    rootDir,
    log: () => undefined,
  });
}
