import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';

import { Option, type Command } from 'commander';

import { isRunning } from '../../api/vm-api.js';
import { QubesError, QubesVMNotHaltedError } from '../../errors.js';
import { DEFAULT_QREXEC_CLIENT } from '../../qrexec-transport.js';
import { action, type CliContext, type GlobalOptions } from '../context.js';
import { UsageError, type CliIo } from '../io.js';
import { shellCommand } from './shell-words.js';
import { encodeForVmExec, featureEnabled } from './vmexec.js';

/** dom0's qrexec client (upstream: qrexec-client -d VM USER:QUBESRPC SERVICE dom0). */
export const DOM0_QREXEC_CLIENT = 'odyssey-qrexec-client';

interface RunOptions {
  user?: string;
  /** false with --no-autostart; commander leaves it unset otherwise, since --autostart is defined too. */
  autostart?: boolean;
  passIo?: boolean;
  dispvm?: string | true;
  all?: boolean;
  exclude: string[];
  service?: boolean;
  shell: boolean;
}

/** Where the command runs: a named qube, or a disposable made for it. */
type Target =
  { readonly kind: 'vm'; readonly name: string } | { readonly kind: 'dispvm'; readonly template?: string };

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** How far upstream's `-v`/`-q` and --pass-io leave the "Running ... on ..." lines (QubesArgumentParser's verbosity). */
function verbosity(command: Command, passIo: boolean): number {
  const { verbose, quiet } = command.optsWithGlobals<{ verbose?: boolean; quiet?: boolean }>();
  return 1 + (verbose ? 1 : 0) - (quiet ? 1 : 0) - (passIo ? 1 : 0);
}

/** Whether COMMAND and its ARGs go to a program as they are (upstream's use_exec): with ARGs, or --no-shell. */
function execWords(options: Pick<RunOptions, 'service' | 'shell'>, words: readonly string[]): boolean {
  return !options.service && (words.length > 1 || !options.shell);
}

/** What the qube (or its template) announces that the call depends on. */
interface GuestServices {
  /** The `vmexec` feature: its agent has qubes.VMExec. */
  readonly vmexec: boolean;
  /**
   * The `supported-rpc.qubes.VMRootExec` feature: its agent has qubes.VMRootExec and
   * qubes.VMRootShell, both forced to run as root (upstream checks VMRootExec for both, since the
   * two came with the same force-user=root configuration).
   */
  readonly rootExec: boolean;
}

/** A call as the qrexec client makes it: service (with argument), the user, the bytes sent first. */
interface ServiceCall {
  readonly service: string;
  /** The user to run it as; undefined leaves it to the daemon (the qube's default_user). */
  readonly user: string | undefined;
  readonly prefix: string;
}

/**
 * The call upstream's qvm-run makes: --service calls COMMAND itself; words for a program go in
 * qubes.VMExec's argument when the qube's agent has it, in qubes.VMRootExec's (with no user: the
 * service forces root) for `-u root` where the agent announces it; otherwise a shell command goes to
 * qubes.VMShell (qubes.VMRootShell for `-u root`, likewise) on its stdin, ended by `; exit`
 * (upstream's prepare_input_for_vmshell), program words quoted for the shell.
 */
function serviceCall(
  options: Pick<RunOptions, 'service' | 'shell' | 'user'>,
  words: readonly string[],
  guest: GuestServices,
): ServiceCall {
  const [cmd = '', ...args] = words;
  const user = options.user;
  if (options.service) {
    if (!options.shell) throw new UsageError('--no-shell does not apply to --service');
    if (args.length > 0) throw new UsageError('--service takes no command arguments');
    return { service: cmd, user, prefix: '' };
  }
  const root = user === 'root' && guest.rootExec;
  const exec = execWords(options, words);
  if (exec && guest.vmexec) {
    const service = root ? 'qubes.VMRootExec' : 'qubes.VMExec';
    return { service: `${service}+${encodeForVmExec(words)}`, user: root ? undefined : user, prefix: '' };
  }
  const line = exec ? shellCommand(words) : cmd;
  // Without qubes.VMExec the agent is older than qubes.VMRootShell too: upstream then keeps VMShell.
  const rootShell = root && !exec;
  return {
    service: rootShell ? 'qubes.VMRootShell' : 'qubes.VMShell',
    user: rootShell ? undefined : user,
    prefix: `${line.replace(/\n+$/, '')}; exit\n`,
  };
}

/** A qube nothing is known of (a disposable made by the daemon for a call from inside a qube). */
const NO_GUEST_SERVICES: GuestServices = { vmexec: false, rootExec: false };

/** Whether a feature is on for `vm` or its template, for what the call depends on. */
async function guestServices(
  ctx: CliContext,
  vm: string,
  options: RunOptions,
  words: readonly string[],
): Promise<GuestServices> {
  if (options.service) return NO_GUEST_SERVICES;
  const feature = async (name: string): Promise<boolean> =>
    featureEnabled(await ctx.client.features.checkWithTemplate(vm, name));
  const vmexec = execWords(options, words) && (await feature('vmexec'));
  const rootExec = options.user === 'root' && (await feature('supported-rpc.qubes.VMRootExec'));
  return { vmexec, rootExec };
}

/** The qubes --all means: running, not paused, not internal, not dom0, less --exclude (upstream's filter). */
async function runningQubes(ctx: CliContext, exclude: readonly string[]): Promise<string[]> {
  const candidates = (await ctx.listVms()).filter(
    (vm) => vm.klass !== 'AdminVM' && vm.state === 'Running' && !exclude.includes(vm.name),
  );
  const names: string[] = [];
  for (const vm of candidates) {
    const internal = await ctx.client.features.find(vm.name, 'internal');
    if (!internal) names.push(vm.name);
  }
  return names.sort();
}

/**
 * Makes sure the qube can take the call: started unless --no-autostart (then a halted qube is
 * skipped with status 1), unpaused likewise. Returns false to skip it.
 */
async function ready(ctx: CliContext, vm: string, options: RunOptions, verbose: number): Promise<boolean> {
  const { powerState } = await ctx.client.vms.currentState(vm);
  if (options.autostart === false) {
    if (!isRunning(powerState)) {
      if (verbose > 0) ctx.printError(`Qube '${vm}' not started`);
      return false;
    }
    if (powerState === 'Paused') {
      if (verbose > 0) ctx.printError(`Qube '${vm}' is paused`);
      return false;
    }
    return true;
  }
  if (powerState === 'Paused') {
    await ctx.client.vms.unpause(vm);
    return true;
  }
  try {
    await ctx.client.vms.start(vm);
  } catch (err) {
    if (!(err instanceof QubesVMNotHaltedError)) throw err;
  }
  return true;
}

/**
 * Runs the service in `target` through the qrexec client: dom0's odyssey-qrexec-client on odysseyd's
 * local socket of the qube, or (with --qrexec, inside a qube) qrexec-client-vm, which also takes
 * `@dispvm[:TEMPLATE]` targets. Resolves with the service's exit code.
 */
function callService(
  ctx: CliContext,
  global: GlobalOptions,
  target: string,
  call: ServiceCall,
  passIo: boolean,
): Promise<number> {
  const env = ctx.io.env;
  const [program, args] = global.qrexec
    ? [env.ODYSSEY_QREXEC_CLIENT || DEFAULT_QREXEC_CLIENT, [target, call.service]]
    : [
        env.ODYSSEY_DOM0_QREXEC_CLIENT || DOM0_QREXEC_CLIENT,
        [
          ...(env.ODYSSEY_QREXEC_SOCKET_DIR ? ['--socket-dir', env.ODYSSEY_QREXEC_SOCKET_DIR] : []),
          ...(call.user === undefined ? [] : ['-u', call.user]),
          target,
          call.service,
        ],
      ];
  const output = passIo ? 'pipe' : 'ignore';
  const child = spawn(program, args, { stdio: ['pipe', output, output] });
  const stdin = ctx.io.stdin as Readable;
  // stdio[0] is 'pipe', so there is a stdin: the check only tells the compiler.
  const input = child.stdin;
  if (!input) throw new Error(`${program}: no stdin pipe`);
  child.stdout?.on('data', (chunk: Buffer) => ctx.io.stdout.write(chunk));
  child.stderr?.on('data', (chunk: Buffer) => ctx.io.stderr.write(chunk));
  // The service may exit before it read its input; its exit code says how it went.
  input.on('error', () => undefined);
  if (call.prefix !== '') input.write(call.prefix);
  if (passIo) stdin.pipe(input);
  else input.end();
  return new Promise<number>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run ${program}: ${err.message}`)));
    child.once('close', (code, signal) => {
      if (passIo) stdin.unpipe(input);
      // A client killed by a signal: 128 + its number, as a shell reports it.
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}

/** Kills the disposable made for this run (its auto_cleanup removes it), as upstream's DispVM cleanup does. */
async function destroyDisposable(ctx: CliContext, name: string): Promise<void> {
  try {
    await ctx.client.vms.kill(name);
  } catch (err) {
    // Not running any more (it stopped by itself and auto_cleanup removed it): nothing left to do.
    if (!(err instanceof QubesError)) throw err;
  }
}

/**
 * A signal that would end qvm ends the run instead: the disposable goes, then qvm exits with
 * 128 + the signal's number, as the shell reports a signalled process.
 */
function onSignals(cleanup: () => Promise<void>): () => void {
  const signals = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;
  const handlers = Object.entries(signals).map(([name, number]) => {
    const handler = (): void => {
      void cleanup().finally(() => process.exit(128 + number));
    };
    process.once(name, handler);
    return [name, handler] as const;
  });
  return () => {
    for (const [name, handler] of handlers) process.off(name, handler);
  };
}

/**
 * COMMAND and its ARGs after VMNAME, as upstream's argparse reads them: one `--` there is skipped
 * (`qvm run vm -- -x` runs `-x`); any other word starting with `-` is an option put after VMNAME,
 * which upstream refuses too (qvm's options go before VMNAME, the command's after COMMAND).
 */
function commandAfterVmName(vm: string, rest: readonly string[]): string[] {
  const [first, ...more] = rest;
  if (first === '--') return more;
  if (first !== undefined && first.startsWith('-') && first !== '-') {
    throw new UsageError(
      `option '${first}' after ${vm}: put it before the qube's name, or '--' before COMMAND`,
    );
  }
  return [...rest];
}

async function runCommand(ctx: CliContext, command: Command): Promise<number> {
  const options = command.opts<RunOptions>();
  const global = command.optsWithGlobals<GlobalOptions>();
  const words = command.args;
  const passIo = options.passIo ?? false;
  if (global.qrexec && options.user !== undefined) {
    throw new UsageError('--user is available only from dom0');
  }
  let targets: Target[];
  let commandWords: string[];
  if (options.dispvm !== undefined) {
    if (options.all) throw new UsageError('--dispvm cannot be used with --all');
    if (options.exclude.length > 0) throw new UsageError('Cannot use --exclude with --dispvm');
    targets = [{ kind: 'dispvm', ...(options.dispvm === true ? {} : { template: options.dispvm }) }];
    commandWords = words;
  } else if (options.all) {
    targets = (await runningQubes(ctx, options.exclude)).map((name) => ({ kind: 'vm', name }));
    commandWords = words;
  } else {
    if (options.exclude.length > 0) throw new UsageError('--exclude can only be used with --all');
    const [vm, ...rest] = words;
    if (vm === undefined) throw new UsageError('a qube name, --all or --dispvm is required');
    commandWords = commandAfterVmName(vm, rest);
    if ((await ctx.requireVm(vm)).klass === 'AdminVM') {
      // Upstream runs it locally with sudo; dom0 has no qrexec agent here to run it.
      throw new UsageError(`${vm} is this host: run the command directly`);
    }
    targets = [{ kind: 'vm', name: vm }];
  }
  if (commandWords.length === 0) throw new UsageError('missing COMMAND');
  if (passIo && targets.length > 1) {
    throw new UsageError('--pass-io cannot be used when more than 1 qube is chosen');
  }
  // Validates the words before anything starts; each qube then gets its own call.
  serviceCall(options, commandWords, NO_GUEST_SERVICES);
  const verbose = verbosity(command, passIo);
  let code = 0;
  for (const target of targets) {
    if (target.kind === 'dispvm' && global.qrexec) {
      // From a qube, the daemon makes the disposable for the call and removes it afterwards.
      const name = target.template === undefined ? '@dispvm' : `@dispvm:${target.template}`;
      // The disposable does not exist yet, so nothing says whether it has qubes.VMExec.
      const call = serviceCall(options, commandWords, NO_GUEST_SERVICES);
      code = Math.max(code, await callService(ctx, global, name, call, passIo));
      continue;
    }
    if (target.kind === 'dispvm') {
      const name = await ctx.client.vms.createDisposable(target.template ?? 'dom0');
      const cleanup = () => destroyDisposable(ctx, name);
      const release = onSignals(cleanup);
      try {
        if (verbose > 0) ctx.printError(`Running '${commandWords.join(' ')}' on ${name}`);
        await ctx.client.vms.start(name);
        const guest = await guestServices(ctx, name, options, commandWords);
        const call = serviceCall(options, commandWords, guest);
        code = Math.max(code, await callService(ctx, global, name, call, passIo));
      } finally {
        release();
        await cleanup();
      }
      continue;
    }
    if (!(await ready(ctx, target.name, options, verbose))) {
      code = Math.max(code, 1);
      continue;
    }
    if (verbose > 0) ctx.printError(`Running '${commandWords.join(' ')}' on ${target.name}`);
    const guest = await guestServices(ctx, target.name, options, commandWords);
    const call = serviceCall(options, commandWords, guest);
    const status = await callService(ctx, global, target.name, call, passIo);
    if (status !== 0 && verbose > 0) ctx.printError(`${target.name}: command failed with code: ${status}`);
    code = Math.max(code, status);
  }
  if (passIo) (ctx.io.stdin as Readable).destroy();
  return code;
}

/** How many words after `arg` (an option word) commander takes as its value, given `options`. */
function valueWords(arg: string, next: string | undefined, options: readonly Option[]): number {
  const takesNext = (option: Option | undefined): number =>
    option?.required || (option?.optional && next !== undefined && !(next.length > 1 && next.startsWith('-')))
      ? 1
      : 0;
  if (arg.startsWith('--')) {
    // --opt=value carries its value.
    return arg.includes('=') ? 0 : takesNext(options.find((o) => o.long === arg));
  }
  // A group of short options (-pu USER): the first one taking a value ends it, the rest of the
  // word being the value if there is any.
  for (let i = 1; i < arg.length; i++) {
    const option = options.find((o) => o.short === `-${arg[i] ?? ''}`);
    if (option === undefined) return 0;
    if (option.required || option.optional) return i === arg.length - 1 ? takesNext(option) : 0;
  }
  return 0;
}

/**
 * Upstream's qvm-run (argparse: COMMAND, then ARGs as a REMAINDER) reads its options only before
 * the first positional word; from there on every word is VMNAME, COMMAND or the command's
 * (`qvm run vm ls -un`). Commander takes options from anywhere, the program's too
 * (`qvm run vm grep -v x` would be qvm's -v), so this puts a `--` where qvm's options end. Any
 * other command line is returned as it is.
 */
export function endRunOptions(program: Command, argv: readonly string[]): string[] {
  const run = program.commands.find((c) => c.name() === 'run');
  let options: readonly Option[] = program.options;
  let inRun = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') break;
    if (arg.startsWith('-') && arg !== '-') {
      i += valueWords(arg, argv[i + 1], options);
    } else if (inRun) {
      return [...argv.slice(0, i), '--', ...argv.slice(i)];
    } else if (run !== undefined && arg === 'run') {
      inRun = true;
      options = [...program.options, ...run.options];
    } else {
      break;
    }
  }
  return [...argv];
}

export function registerRun(program: Command, io: CliIo): void {
  program
    .command('run')
    .description(
      'run a command in a qube (like qvm-run): VM COMMAND [ARG...], or --dispvm[=TEMPLATE] / --all COMMAND [ARG...]',
    )
    .usage('[options] [VMNAME] COMMAND [ARG...]')
    .argument('<args...>')
    .option('-u, --user <user>', "run the command as USER (default: the qube's default_user; dom0 only)")
    .option('-a, --autostart', 'start the qube if it is not running (the default)')
    .option('-n, --no-autostart', 'do not start or unpause the qube; a halted one is skipped (status 1)')
    .option(
      '-p, --pass-io',
      "pass stdin, stdout and stderr to and from the command (the exit status is the command's either way)",
    )
    .option(
      '--dispvm [template]',
      'run in a new disposable of TEMPLATE, removed afterwards: --dispvm=TEMPLATE, or --dispvm -- COMMAND for default_dispvm',
    )
    .option('--all', 'run in every running qube')
    .option('--exclude <vm>', 'with --all, leave this qube out (repeatable)', collect, [])
    .option('--service', 'COMMAND names a qrexec service to call instead of a shell command')
    .option(
      '--no-shell',
      'run COMMAND as a program, not a shell command (qubes.VMExec where the qube has it, else quoted for the shell)',
    )
    .option('--gui', 'accepted for compatibility (no GUI here)')
    .option('--no-gui', 'accepted for compatibility')
    // Upstream's other spellings of the same options.
    .addOption(new Option('--auto').hideHelp())
    .addOption(new Option('--no-auto').hideHelp().implies({ autostart: false }))
    .addOption(new Option('--nogui').hideHelp())
    .action(action(io, runCommand));
}
