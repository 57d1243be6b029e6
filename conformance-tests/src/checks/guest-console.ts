import { constants, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReadStream } from 'node:tty';

import { isRunning } from '@odyssey/client';

import { fail, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import { guestsOf } from './guest.js';

/** What every guest image prints on its console at the end of its boot, once its qrexec agent is up. */
const BOOT_DONE = 'ODYSSEY-QREXEC-READY';
/** How long admin.vm.Console may keep failing while the qube starts (the check itself has 180 s). */
const BOOT_MS = 150_000;
const CONSOLE_POLL_MS = 50;

/** admin.vm.Console's pty as soon as the qube has one (it is being started by the caller). */
async function consoleWhileStarting(
  ctx: CheckContext,
  vm: string,
  starting: Promise<unknown>,
): Promise<string> {
  let startError: unknown;
  starting.catch((error: unknown) => (startError = error));
  const deadline = performance.now() + BOOT_MS;
  for (;;) {
    try {
      return (await ctx.client.call('admin.vm.Console', vm)).toString('utf8');
    } catch (error) {
      // Not running yet: the start is on its way.
      if (startError !== undefined) fail(`${vm} did not start: ${String(startError)}`);
      if (performance.now() > deadline) fail(`admin.vm.Console of ${vm} kept failing: ${String(error)}`);
    }
    await sleep(CONSOLE_POLL_MS);
  }
}

/**
 * Reads the pty (raw: no echo back into the guest) until `done` holds for what it printed; fails
 * with what it saw when the console closes first (the domain went away).
 */
async function readConsole(path: string, done: (seen: string) => boolean): Promise<void> {
  const pty = new ReadStream(openSync(path, constants.O_RDONLY | constants.O_NOCTTY));
  pty.setRawMode(true);
  let seen = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const closed = (why: string): void => reject(new Error(`the console ${why}; it printed: ${seen}`));
      pty.on('data', (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        if (done(seen)) resolve();
      });
      pty.once('error', (error) => closed(`failed (${error.message})`));
      pty.once('close', () => closed('closed'));
    });
  } finally {
    pty.destroy();
  }
}

/**
 * `qvm console`'s view of a booting qube: admin.vm.Console names the serial console's pty while the
 * qube starts, and the pty carries the guest's boot, up to the line the guest prints once its qrexec
 * agent is up.
 */
export const guestConsoleChecks: readonly Check[] = [
  {
    id: 'guest.console-boot-log',
    category: 'guest',
    needs: ['console'],
    run: async (ctx) => {
      guestsOf(ctx);
      const vm = QUBES.peer;
      if (isRunning((await ctx.client.vms.currentState(vm)).powerState)) await ctx.client.vms.kill(vm);
      const starting = ctx.client.vms.start(vm);
      try {
        const path = await consoleWhileStarting(ctx, vm, starting);
        if (!path.startsWith('/dev/'))
          fail(`admin.vm.Console of ${vm} answered ${JSON.stringify(path)}, not a pty`);
        const booted = readConsole(path, (text) => text.includes(BOOT_DONE));
        // A start that fails first ends the wait with its own error.
        await Promise.race([booted, starting.then(() => booted)]);
      } finally {
        await starting;
      }
    },
  },
];
