import { setTimeout as sleep } from 'node:timers/promises';

/** How long the agent's boot-time steps wait for dom0's QubesDB before going on without it. */
export const QUBESDB_WAIT_MS = 30_000;

/** True once dom0's database has arrived, false when `waitMs` passed first. */
export function qubesDbArrived(ready: Promise<void>, waitMs = QUBESDB_WAIT_MS): Promise<boolean> {
  return Promise.race([ready.then(() => true), sleep(waitMs, false)]);
}
