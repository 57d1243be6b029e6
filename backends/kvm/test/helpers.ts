import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const LIBVIRTD_TEST = join(ROOT, 'scripts/libvirtd-test.sh');
const BUILD_IMAGE = join(ROOT, 'scripts/build-guest-image.sh');

export function onPath(cmd: string): boolean {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).concat(['/usr/sbin', '/sbin']);
  return dirs.some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Why real guests cannot run here, or undefined when they can. Tests skip (and say so) only for these. */
export function whyNoGuests(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (private libvirtd in its own mount namespace)';
  const missing = ['libvirtd', 'virtlogd', 'virsh', 'qemu-system-x86_64', 'cpio', 'lz4'].filter(
    (c) => !onPath(c),
  );
  if (missing.length > 0)
    return `missing ${missing.join(', ')} (see backends/kvm/README.md for the apt packages)`;
  return undefined;
}

export interface TestDaemon {
  readonly dir: string;
  readonly socket: string;
  /** virsh's URI for this daemon. */
  readonly virshUri: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function libvirtd(cmd: string, dir: string): Promise<Record<string, string>> {
  const { stdout } = await run(LIBVIRTD_TEST, [cmd, dir], { timeout: 90_000 });
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => l.split('=', 2) as [string, string]),
  );
}

/** A private libvirtd (scripts/libvirtd-test.sh) with its sockets in `dir`. */
export async function startLibvirtd(dir: string): Promise<TestDaemon> {
  const env = await libvirtd('start', dir);
  const socket = env['socket'] as string;
  return {
    dir,
    socket,
    virshUri: `qemu:///system?socket=${socket}`,
    restart: async () => void (await libvirtd('restart', dir)),
    stop: async () => void (await libvirtd('stop', dir)),
  };
}

export interface GuestImage {
  readonly kernel: string;
  readonly initramfs: string;
  readonly version: string;
}

/** The guest image of scripts/build-guest-image.sh (cached across runs). */
export async function guestImage(): Promise<GuestImage> {
  const cache = process.env['ODYSSEY_GUEST_CACHE'] ?? '/var/cache/odyssey/guest';
  const { stdout } = await run(BUILD_IMAGE, ['--cache-dir', cache], { timeout: 300_000 });
  const out = Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => l.split('=', 2) as [string, string]),
  );
  return {
    kernel: out['kernel'] as string,
    initramfs: out['initramfs'] as string,
    version: out['version'] as string,
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns a value other than undefined; rejects after `timeoutMs`. */
export async function until<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export { run };
