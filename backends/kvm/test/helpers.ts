import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import {
  startDaemon,
  whyNoDaemon,
  type TestDaemon as LibvirtTestDaemon,
} from '../../../libvirt/test/daemon.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BUILD_IMAGE = join(ROOT, 'scripts/build-guest-image.sh');

/** Why real guests cannot run here, or undefined when they can. Tests skip (and say so) only for these. */
export function whyNoGuests(): string | undefined {
  return whyNoDaemon(['qemu-system-x86_64', 'cpio', 'lz4']);
}

export interface TestDaemon extends LibvirtTestDaemon {
  /** virsh's URI for this daemon. */
  readonly virshUri: string;
}

/** The private libvirtd of libvirt's tests (scripts/libvirtd-test.sh), with virsh's URI for it. */
export async function startLibvirtd(): Promise<TestDaemon> {
  const daemon = await startDaemon();
  return Object.assign(daemon, { virshUri: `qemu:///system?socket=${daemon.socket}` });
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

export { onPath } from '../../../libvirt/test/daemon.js';
export { run };
