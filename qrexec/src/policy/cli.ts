import { readFile, stat } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import { fetchSystemInfo, QUBESD_INTERNAL_SOCKET } from './daemon-client.js';
import { decide, type Outcome } from './evaluate.js';
import { DEFAULT_LEGACY_DIR, loadPolicy } from './loader.js';
import type { CallInit } from './request.js';
import { parseSystemInfo, type SystemInfo } from './system-info.js';

export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** Adds commands that need more than the policy engine (the daemon adds `generate-admin`). */
export type PolicyCliExtension = (program: Command, io: CliIo) => void;

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/**
 * Exit statuses: 0 the call is allowed; 1 it is not (deny, a policy that
 * failed to load, or ask, which nobody answers here), as upstream's
 * `qrexec-policy-exec --just-evaluate`; 2 bad usage or unreadable inputs.
 */
const EXIT_ALLOWED = 0;
const EXIT_NOT_ALLOWED = 1;
const EXIT_USAGE = 2;

class UsageError extends Error {}

/**
 * The first output line, meant for scripts: `allow target=X`, `deny REASON`,
 * `ask default_target=X` or `ask`.
 */
export function summaryLine(outcome: Outcome): string {
  const d = outcome.decision;
  if (d.result === 'allow') return `allow target=${d.target}`;
  if (d.result === 'deny') return `deny ${d.reason}`;
  return d.defaultTarget === null ? 'ask' : `ask default_target=${d.defaultTarget}`;
}

/**
 * The lines after the summary: qrexec-daemon's reply for allow/deny; for ask,
 * which has no reply until the user answers, what the question would offer.
 */
export function detailLines(outcome: Outcome): string[] {
  const d = outcome.decision;
  if (outcome.response !== null) return outcome.response.split('\n');
  if (d.result !== 'ask') return [];
  return [
    `user=${d.user || 'DEFAULT'}`,
    'result=ask',
    `targets_for_ask=${d.targets.join(' ')}`,
    ...(d.defaultTarget === null ? [] : [`default_target=${d.defaultTarget}`]),
    `autostart=${d.autostart ? 'True' : 'False'}`,
    `requested_target=${d.request.target}`,
  ];
}

async function readSystemInfo(file: string): Promise<SystemInfo> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read system info ${file}: ${(err as Error).message}`);
  }
  try {
    return parseSystemInfo(JSON.parse(text));
  } catch (err) {
    throw new UsageError(`invalid system info ${file}: ${(err as Error).message}`);
  }
}

async function daemonSystemInfo(socket: string): Promise<SystemInfo> {
  try {
    return await fetchSystemInfo(socket);
  } catch (err) {
    throw new UsageError(`cannot get system info from ${socket}: ${(err as Error).message}`);
  }
}

async function requireDir(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new UsageError(`policy directory ${dir} is not a readable directory`);
}

interface EvalOptions {
  policyDir: string[];
  legacyDir: string;
  systemInfo?: string;
  daemonSocket: string;
}

function buildProgram(
  io: CliIo,
  run: (call: CallInit, options: EvalOptions) => Promise<void>,
  extend?: PolicyCliExtension,
): Command {
  const program = new Command('odyssey-policy')
    .description('Evaluate qrexec policy the way the daemon does')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });
  program
    .command('eval')
    .description('decide one qrexec call; the first output line is the decision')
    .requiredOption(
      '--policy-dir <dir>',
      'policy.d directory; repeat to merge (earlier wins per file name)',
      (value: string, prev: string[] = []) => [...prev, value],
    )
    .option('--legacy-dir <dir>', 'R4.0 per-service files read by !compat-4.0', DEFAULT_LEGACY_DIR)
    .option('--system-info <file>', 'system info JSON (default: ask the daemon)')
    .option('--daemon-socket <path>', 'daemon internal socket', QUBESD_INTERNAL_SOCKET)
    .argument('<source>', 'calling qube')
    .argument('<target>', "requested target ('' for none)")
    .argument('<service>', 'SERVICE or SERVICE+ARGUMENT')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .action(async (source: string, target: string, call: string, options: EvalOptions) => {
      await run({ source, target, call }, options);
    });
  extend?.(program, io);
  return program;
}

/** `odyssey-policy eval …`; returns the exit status instead of exiting, so tests can call it. */
export async function main(
  argv: readonly string[],
  io: CliIo = processIo,
  extend?: PolicyCliExtension,
): Promise<number> {
  let status = EXIT_ALLOWED;
  const program = buildProgram(
    io,
    async (call, options) => {
      for (const dir of options.policyDir) await requireDir(dir);
      const systemInfo = options.systemInfo
        ? await readSystemInfo(options.systemInfo)
        : await daemonSystemInfo(options.daemonSocket);
      const state = loadPolicy({ dirs: options.policyDir, legacyDir: options.legacyDir });
      if (state.error)
        io.err(`odyssey-policy: policy not loaded, every call is denied: ${state.error.message}\n`);
      const outcome = decide(state, call, systemInfo);
      io.out([summaryLine(outcome), ...detailLines(outcome)].join('\n') + '\n');
      if (outcome.decision.result !== 'allow') status = EXIT_NOT_ALLOWED;
    },
    extend,
  );
  try {
    await program.parseAsync([...argv]);
    return status;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version are not errors.
      return err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      io.err(`odyssey-policy: ${err.message}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
}
