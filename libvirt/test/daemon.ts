import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/libvirtd-test.sh', import.meta.url));

export function onPath(cmd: string): boolean {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/**
 * Why a private libvirtd cannot be started here, or undefined if it can. Tests skip (and print
 * this) only for these reasons; any other failure to start is a test failure.
 */
export function whyNoDaemon(extra: string[] = []): string | undefined {
  if (process.getuid?.() !== 0)
    return 'the test libvirtd must run as root (private mount namespace, qemu:///system)';
  const missing = ['libvirtd', 'virtlogd', 'virsh', 'unshare', 'nsenter', ...extra].filter((c) => !onPath(c));
  if (missing.length > 0) {
    return `missing ${missing.join(', ')}; install libvirt-daemon-system libvirt-clients (see scripts/setup.sh)`;
  }
  return undefined;
}

export function skipReason(extra: string[] = []): string | undefined {
  const reason = whyNoDaemon(extra);
  if (reason) console.warn(`[libvirt tests] SKIPPED: ${reason}`);
  return reason;
}

export interface TestDaemon {
  dir: string;
  socket: string;
  pid: number;
  /** Kills libvirtd and starts it again in the same namespace (state on tmpfs survives). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function script(cmd: string, dir: string): Promise<Record<string, string>> {
  // A first start probes QEMU for ~8 s, more while other suites boot guests on the same cores.
  const { stdout } = await run(SCRIPT, [cmd, dir], { timeout: 90_000 });
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => l.split('=', 2) as [string, string]),
  );
}

/** Starts a private libvirtd + virtlogd through scripts/libvirtd-test.sh. */
export async function startDaemon(): Promise<TestDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'odyssey-libvirtd-'));
  const env = await script('start', dir);
  const daemon: TestDaemon = {
    dir,
    socket: env.socket as string,
    pid: Number(env.pid),
    async restart() {
      const next = await script('restart', dir);
      daemon.pid = Number(next.pid);
    },
    async stop() {
      await script('stop', dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return daemon;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves when `predicate` holds, polling; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
