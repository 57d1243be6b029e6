import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { VmmError, type BackendContext } from '@odyssey/hal';
import { ip } from './veth-links.js';

const run = promisify(execFile);

/**
 * The uplink's name inside the container: not `eth0` (a frontend link takes that if the qube is
 * later given a netvm) nor `vif*` (a client's); the guest's net daemon tells an uplink by its MAC.
 */
export const UPLINK_IFNAME = 'uplink0';
/**
 * QEMU's default NIC MAC, as a user-mode network's guest has it: never `fe:00:*` (a client's link)
 * nor `00:16:3e:*` (core's qube MACs), which is how the guest's net daemon sees an uplink. Each
 * uplink is its own slirp network, so every netvm can have the same one.
 */
export const UPLINK_MAC = '52:54:00:12:34:56';
export const SLIRP4NETNS = 'slirp4netns';
/** slirp4netns is ready in milliseconds; a hung one must not hold a start for ever. */
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PROBE_TIMEOUT_MS = 10_000;
/** What is kept of slirp4netns's own output, for an error message: its last bytes only. */
const OUTPUT_TAIL = 4096;

interface Uplink {
  /** The host pid of the container init whose network namespace it serves. */
  readonly initPid: number;
  readonly child: ChildProcess;
  readonly output: OutputTail;
  /** Set before we end it, so its exit is not reported as a failure. */
  stopping: boolean;
}

/**
 * A netvm's uplink as QEMU's user-mode network gives a KVM guest one: a tap device in the
 * container's own network namespace, served by `slirp4netns` (libslirp: DHCP hands out 10.0.2.15,
 * the host's loopback is 10.0.2.2, DNS 10.0.2.3; nothing outside can connect in). The tap is made
 * persistent first, with its MAC, so the guest never sees it with another; slirp4netns attaches to
 * it, sandboxed (own mount namespace, capabilities dropped) and seccomp-filtered. No host
 * interface: slirp4netns speaks to the outside through ordinary sockets of its own.
 *
 * Lifetime: each slirp4netns is our child and gets one end of a socket pair as `--exit-fd`; it
 * exits when that end sees EOF, so it dies with this process (odysseyd killed included) and never
 * outlives it. It does not notice its container going (the tap holds the namespace), so `stop` is
 * called from the flavour's afterStop (shutdown, kill, crash, a stop seen at open) and from close.
 * A domain still running when a backend opens gets a new one (`start` again): its tap is still
 * there, with the guest's address on it.
 */
export class SlirpUplinks {
  readonly #uplinks = new Map<string, Uplink>();
  #probed: Promise<void> | undefined;

  constructor(private readonly log: BackendContext['log']) {}

  /** Rejects with `unsupported` and the reason when slirp4netns cannot be run here. */
  probe(): Promise<void> {
    this.#probed ??= run(SLIRP4NETNS, ['--version'], {
      timeout: PROBE_TIMEOUT_MS,
      maxBuffer: 64 * 1024,
    }).then(
      () => undefined,
      (error: unknown) => {
        this.#probed = undefined;
        throw new VmmError(
          'unsupported',
          `an uplink on the lxc backend needs ${SLIRP4NETNS} (apt-get install ${SLIRP4NETNS}): ${errorText(error)}`,
        );
      },
    );
    return this.#probed;
  }

  /** The uplink of `name`, whose container init is host pid `initPid`; resolves once slirp4netns serves the tap. */
  async start(name: string, initPid: number): Promise<void> {
    const current = this.#uplinks.get(name);
    if (current && current.initPid === initPid && current.child.exitCode === null) return;
    await this.stop(name);
    await this.probe();
    const what = `uplink of ${name}`;
    await ensureTap(initPid, what);
    const child = spawn(
      SLIRP4NETNS,
      ['--enable-sandbox', '--enable-seccomp', '--ready-fd=3', '--exit-fd=4', String(initPid), UPLINK_IFNAME],
      { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] },
    );
    const output = new OutputTail();
    child.stdout?.on('data', (chunk: Buffer) => output.add(chunk));
    child.stderr?.on('data', (chunk: Buffer) => output.add(chunk));
    const uplink: Uplink = { initPid, child, output, stopping: false };
    this.#uplinks.set(name, uplink);
    // Once spawned, an error (a failed kill) is logged: unhandled, it would end odysseyd.
    child.on('error', (error) => this.log('warn', `lxc: ${SLIRP4NETNS} of ${name}: ${String(error)}`));
    child.on('exit', (code, signal) => {
      if (this.#uplinks.get(name) === uplink) this.#uplinks.delete(name);
      if (!uplink.stopping) {
        this.log('warn', `lxc: ${SLIRP4NETNS} of ${name} ended (${signal ?? code}): ${output.text()}`);
      }
    });
    try {
      await ready(child, output, what);
    } catch (error) {
      await this.stop(name);
      throw error;
    }
  }

  /** Ends the uplink of `name` unless it serves the container init `runningInit` (a domain that runs again). */
  async stop(name: string, runningInit?: number): Promise<void> {
    const uplink = this.#uplinks.get(name);
    if (!uplink || uplink.initPid === runningInit) return;
    this.#uplinks.delete(name);
    uplink.stopping = true;
    const { child } = uplink;
    // Never spawned (no pid), or already gone: no exit to wait for.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    // EOF on its exit fd is its own way out; SIGKILL if it does not take it.
    (child.stdio[4] as Readable | null)?.destroy();
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.#uplinks.keys()].map((name) => this.stop(name)));
  }
}

/** Waits for slirp4netns's byte on its ready fd, or its end, or the timeout. */
async function ready(child: ChildProcess, output: OutputTail, what: string): Promise<void> {
  const fd = child.stdio[3] as Readable | null;
  if (!fd) throw new VmmError('failed', `${what}: no ready fd`);
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (why: string): void =>
        reject(new VmmError('failed', `${what}: ${SLIRP4NETNS} ${why}: ${output.text()}`));
      fd.once('data', () => resolve());
      fd.once('error', (error) => fail(`ready fd: ${String(error)}`));
      child.once('error', (error) => fail(`did not run: ${String(error)}`));
      child.once('exit', (code, signal) => fail(`ended (${signal ?? code}) before it was ready`));
      timer = setTimeout(() => fail(`not ready within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    });
  } finally {
    clearTimeout(timer);
    fd.destroy();
  }
}

/**
 * A persistent tap named UPLINK_IFNAME with UPLINK_MAC in the network namespace of `pid`, made
 * there by iproute2 (`nsenter -n`). One left by an earlier slirp4netns of the same container (a
 * backend that opened again) is kept; anything else by that name is replaced.
 */
async function ensureTap(pid: number, what: string): Promise<void> {
  const found = JSON.parse(await ip(pid, ['-d', '-j', 'link', 'show'], what)) as {
    ifname: string;
    address?: string;
    linkinfo?: { info_kind?: string };
  }[];
  const existing = found.find((l) => l.ifname === UPLINK_IFNAME);
  if (existing?.linkinfo?.info_kind === 'tun' && existing.address === UPLINK_MAC) return;
  if (existing) await ip(pid, ['link', 'del', 'dev', UPLINK_IFNAME], what);
  await ip(pid, ['tuntap', 'add', 'name', UPLINK_IFNAME, 'mode', 'tap'], what);
  await ip(pid, ['link', 'set', 'dev', UPLINK_IFNAME, 'address', UPLINK_MAC], what);
}

function errorText(error: unknown): string {
  const stderr = (error as { stderr?: string }).stderr?.trim();
  return stderr || String(error);
}

/** The last OUTPUT_TAIL bytes of a process's output, however much it writes. */
class OutputTail {
  #buffer = Buffer.alloc(0);

  add(chunk: Buffer): void {
    const joined = Buffer.concat([this.#buffer, chunk]);
    this.#buffer = joined.subarray(Math.max(0, joined.length - OUTPUT_TAIL));
  }

  text(): string {
    return this.#buffer.toString('utf8').trim();
  }
}
