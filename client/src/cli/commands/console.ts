import { constants, openSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { ReadStream, WriteStream } from 'node:tty';

import type { Command } from 'commander';

import { action, type CliContext } from '../context.js';
import type { CliIo } from '../io.js';

/** Ctrl-], the escape character of virsh console and telnet: it ends the session. */
const ESCAPE = 0x1d;

/** The terminal qvm runs in, when it is one (raw while attached, so keys reach the console as typed). */
interface Terminal {
  readonly isTTY?: boolean;
  setRawMode?(raw: boolean): unknown;
}

/**
 * Attaches our terminal to the serial console `admin.vm.Console` names (the pty the backend holds
 * the other end of), as `virsh console` does: what the console prints goes to stdout, what is typed
 * goes to the console, and Ctrl-] detaches. Resolves once detached or the console went away.
 */
async function attach(ctx: CliContext, vm: string, path: string): Promise<void> {
  // One descriptor per direction: each stream closes its own.
  const fromConsole = new ReadStream(openSync(path, constants.O_RDONLY | constants.O_NOCTTY));
  const toConsole = new WriteStream(openSync(path, constants.O_WRONLY | constants.O_NOCTTY));
  toConsole.on('error', () => undefined);
  // No echo, no line editing on the console's side of the pty: bytes pass as they are.
  fromConsole.setRawMode(true);
  const stdin = ctx.io.stdin as Readable & Terminal;
  const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  ctx.printError(`Connected to the console of ${vm} (${path})\nEscape character is ^]`);
  if (raw) stdin.setRawMode?.(true);
  try {
    await new Promise<void>((resolve) => {
      fromConsole.on('data', (chunk: Buffer) => ctx.io.stdout.write(chunk));
      // EIO once the backend closed its end: the domain is gone.
      fromConsole.once('error', () => resolve());
      fromConsole.once('close', () => resolve());
      stdin.on('data', (data: Buffer | string) => {
        const chunk = typeof data === 'string' ? Buffer.from(data) : data;
        const escape = chunk.indexOf(ESCAPE);
        if (escape >= 0) {
          if (escape > 0) toConsole.write(chunk.subarray(0, escape));
          resolve();
          return;
        }
        toConsole.write(chunk);
      });
    });
  } finally {
    if (raw) stdin.setRawMode?.(false);
    stdin.destroy();
    fromConsole.destroy();
    toConsole.destroy();
  }
  ctx.printError('');
}

export function registerConsole(program: Command, io: CliIo): void {
  program
    .command('console')
    .description("attach the terminal to a running qube's serial console (admin.vm.Console); Ctrl-] detaches")
    .argument('<vm>')
    .action(
      action(io, async (ctx, command) => {
        const vm = command.processedArgs[0] as string;
        await ctx.requireVm(vm);
        const path = (await ctx.client.call('admin.vm.Console', vm)).toString('utf8');
        await attach(ctx, vm, path);
        return 0;
      }),
    );
}
