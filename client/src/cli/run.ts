import { Command, CommanderError } from 'commander';

import { QubesError } from '../errors.js';
import { registerCheck } from './commands/check.js';
import { registerCreate } from './commands/create.js';
import { registerEvents } from './commands/events.js';
import { registerFeatures } from './commands/features.js';
import { registerFirewall } from './commands/firewall.js';
import { registerGlobalPrefs } from './commands/global-prefs.js';
import { registerLabels } from './commands/labels.js';
import { registerLs } from './commands/ls.js';
import { registerNotes } from './commands/notes.js';
import { registerPower } from './commands/power.js';
import { registerPrefs } from './commands/prefs.js';
import { registerRemove } from './commands/remove.js';
import { registerService } from './commands/service.js';
import { registerStorage } from './commands/storage.js';
import { registerTags } from './commands/tags.js';
import type { GlobalOptions } from './context.js';
import { ExitStatus, UsageError, type CliIo } from './io.js';

const USAGE_STATUS = 2;

function buildProgram(io: CliIo, version: string | undefined): Command {
  const program = new Command('qvm')
    .description('Qubes Admin API command-line client')
    .option('--socket <path>', 'qubesd socket (default: $ODYSSEY_SOCKET or /var/run/qubesd.sock)')
    .option(
      '--qrexec',
      'call through qrexec-client-vm (from inside a qube; $ODYSSEY_QREXEC_CLIENT overrides it)',
    )
    .option('--json', 'machine-readable output (errors as {"error":{type,message}} on stderr)')
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    });
  if (version !== undefined) program.version(version, '--version', 'print the version');
  // Subcommands copy the settings above when created, so they are registered after them.
  registerLs(program, io);
  registerCreate(program, io);
  registerRemove(program, io);
  registerPrefs(program, io);
  registerGlobalPrefs(program, io);
  registerFeatures(program, io);
  registerService(program, io);
  registerTags(program, io);
  registerFirewall(program, io);
  registerPower(program, io);
  registerCheck(program, io);
  registerLabels(program, io);
  registerNotes(program, io);
  registerEvents(program, io);
  registerStorage(program, io);
  return program;
}

/**
 * Runs one `qvm` invocation and returns its exit status: 0 success, 1 a Qubes error (its message on
 * stderr), 2 a usage error; some commands use others for "partly" (check: 3, create: 2).
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  options: { readonly version?: string } = {},
): Promise<number> {
  const program = buildProgram(io, options.version);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof ExitStatus) return err.code;
    // Global options are parsed before any command runs, so this is known for every error below.
    const json = program.opts<GlobalOptions>().json ?? false;
    if (err instanceof CommanderError) {
      // Help and version "errors" are successful exits; commander has already printed everything.
      return err.exitCode === 0 ? 0 : USAGE_STATUS;
    }
    if (err instanceof UsageError) {
      io.stderr.write(
        json
          ? `${JSON.stringify({ error: { type: 'UsageError', message: err.message } })}\n`
          : `error: ${err.message}\n`,
      );
      return USAGE_STATUS;
    }
    const type = err instanceof QubesError ? err.type : ((err as NodeJS.ErrnoException).code ?? 'Error');
    const detail = err instanceof Error ? err.message : String(err);
    // A socket that is missing or not listening deserves a hint at what was being reached.
    const message =
      (err as NodeJS.ErrnoException).syscall === 'connect' ? `Cannot reach qubesd: ${detail}` : detail;
    io.stderr.write(json ? `${JSON.stringify({ error: { type, message } })}\n` : `${message}\n`);
    return 1;
  }
}
