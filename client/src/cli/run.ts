import { Command, CommanderError } from 'commander';

import { QubesError } from '../errors.js';
import { registerCheck } from './commands/check.js';
import { registerConsole } from './commands/console.js';
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
import { endRunOptions, registerRun } from './commands/run.js';
import { registerService } from './commands/service.js';
import { registerStorage } from './commands/storage.js';
import { registerTags } from './commands/tags.js';
import { registerTemplate } from './commands/template.js';
import type { GlobalOptions } from './context.js';
import { ExitStatus, UsageError, type CliIo } from './io.js';
import { subcommandFor } from './upstream-names.js';

const USAGE_STATUS = 2;

/**
 * Usage lines name the command as it was invoked: `qvm-ls [options] [vm...]` rather than
 * `qvm ls ...` when run as qvm-ls (upstream's tools show their own name).
 */
function usageNaming(invokedAs: string, subcommand: string | undefined): (cmd: Command) => string {
  return (cmd) => {
    const names: string[] = [];
    for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
    const shown =
      subcommand !== undefined && names[1] === subcommand ? [invokedAs, ...names.slice(2)] : names;
    return `${shown.join(' ')} ${cmd.usage()}`;
  };
}

function buildProgram(
  io: CliIo,
  invokedAs: string,
  subcommand: string | undefined,
  version: string | undefined,
): Command {
  const program = new Command('qvm')
    .description('Qubes Admin API command-line client')
    .option('--socket <path>', 'qubesd socket (default: $ODYSSEY_SOCKET or /var/run/qubesd.sock)')
    .option(
      '--qrexec',
      'call through qrexec-client-vm (from inside a qube; $ODYSSEY_QREXEC_CLIENT overrides it)',
    )
    .option('--json', 'machine-readable output (errors as {"error":{type,message}} on stderr)')
    .option('-v, --verbose', 'accepted for compatibility with upstream tools')
    .option('-q, --quiet', 'accepted for compatibility with upstream tools')
    .configureHelp({
      commandUsage: usageNaming(invokedAs, subcommand),
      // Run under an upstream name, the subcommand's help is the whole help: show --socket etc. there.
      showGlobalOptions: subcommand !== undefined,
    })
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
  registerRun(program, io);
  registerConsole(program, io);
  registerTemplate(program, io);
  return program;
}

/**
 * Runs one `qvm` invocation and returns its exit status: 0 success, 1 a Qubes error (its message on
 * stderr), 2 a usage error; some commands use others for "partly" (check: 3, create: 2).
 * `invokedAs` is the name the command was run as: one of upstream's names (`qvm-prefs`,
 * `qubes-prefs`, ...) runs that subcommand; any other name is `qvm` itself.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  options: { readonly version?: string; readonly invokedAs?: string } = {},
): Promise<number> {
  const invokedAs = options.invokedAs ?? 'qvm';
  const subcommand = subcommandFor(invokedAs);
  const program = buildProgram(io, invokedAs, subcommand, options.version);
  if (subcommand !== undefined && !program.commands.some((c) => c.name() === subcommand)) {
    io.stderr.write(`${invokedAs}: not supported yet (qvm has no '${subcommand}' command)\n`);
    return USAGE_STATUS;
  }
  try {
    const words = endRunOptions(program, subcommand === undefined ? argv : [subcommand, ...argv]);
    await program.parseAsync(words, { from: 'user' });
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
