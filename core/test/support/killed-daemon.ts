import { afterEach } from 'vitest';

import { rawCall, request } from './harness.js';
import type { SpawnedDaemon } from './spawn.js';
import { spawnDaemon } from './spawn.js';

/** The hypervisor stays unreachable: the calls these tests make (storage, backup) do not need it. */
export const NO_HYPERVISOR_ENV = { ...process.env, ODYSSEY_LIBVIRT_SOCKET: '/nonexistent/libvirt-sock' };

/** Daemons a test spawns, to push to; each is killed (if still alive) and reaped after the test. */
export function spawnedDaemons(): SpawnedDaemon[] {
  const started: SpawnedDaemon[] = [];
  afterEach(async () => {
    for (const d of started.splice(0)) {
      if (d.proc.exitCode === null) d.proc.kill('SIGKILL');
      await d.exited;
    }
  });
  return started;
}

/** One call as the upstream dom0 client makes it; the raw reply as latin1 text. */
export async function call(
  d: SpawnedDaemon,
  method: string,
  dest: string,
  arg = '',
  payload: Buffer | string = '',
): Promise<string> {
  return (await rawCall(d.socket, request(method, dest, arg, payload))).toString('latin1');
}

/** Polls until `cond` holds; the bound (one minute) only keeps a broken daemon from hanging the test. */
export async function until(cond: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('condition never held');
}

/**
 * Starts odysseyd again on a state dir whose daemon was killed: the dead one's lock may still look
 * held for a while, until it is seen as stale.
 */
export async function restart(stateDir: string): Promise<SpawnedDaemon> {
  for (;;) {
    try {
      return await spawnDaemon([], stateDir, NO_HYPERVISOR_ENV);
    } catch (e) {
      if (!/in use by another odysseyd/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
