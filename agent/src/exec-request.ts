import {
  QREXEC_EXIT_PROBLEM,
  QREXEC_EXIT_SERVICE_NOT_FOUND,
  decodeExecParams,
  execCmdline,
  parseVmCommand,
  serveDataChannel,
  serviceFromDirs,
  spawnProcess,
  type ExecParams,
  type ServiceStarter,
} from '@odyssey/qrexec';
import type { VchanTransport } from '@odyssey/hal';
import { builtinService } from './builtin-services.js';
import { RpcConfigError, forcedUser } from './rpc-config.js';
import { runAsCommand } from './run-as.js';

/** The agent's side of a data vchan waits this long for the caller, as upstream's agent does. */
const DATA_CONNECT_TIMEOUT_MS = 120_000;

export interface ExecRequestContext {
  readonly transport: VchanTransport;
  readonly serviceDirs: readonly string[];
  /** Whether calls run as the user dom0 names in them (see run-as.ts). */
  readonly switchUsers: boolean;
  /** Where services' configurations are (see rpc-config.ts). */
  readonly rpcConfigDirs: readonly string[];
  readonly log: (message: string) => void;
}

/**
 * Runs one MSG_EXEC_CMDLINE / MSG_JUST_EXEC from dom0: connects the data
 * vchan to the caller as its client and serves the command there. Resolves
 * with the data vchan's address, which MSG_CONNECTION_TERMINATED reports.
 */
export async function runExecRequest(
  context: ExecRequestContext,
  payload: Buffer,
  justExec: boolean,
): Promise<ExecParams> {
  const { connectDomain, connectPort, tail } = decodeExecParams(payload);
  const params = { connectDomain, connectPort };
  const command = parseVmCommand(execCmdline(tail));
  const runAs = (user: string): readonly string[] =>
    runAsCommand(user, context.switchUsers, process.getuid?.() ?? -1);
  const shell = [...runAs(command.user), '/bin/sh', '-c'];
  const starter: ServiceStarter =
    command.kind === 'service'
      ? async () => {
          // The service's own configuration may force its user (qubes.VMRootShell: root).
          const forced = await forcedUser(context.rpcConfigDirs, command.serviceAndArg).catch(
            (err: unknown) => (err instanceof RpcConfigError ? err : Promise.reject(err)),
          );
          if (forced instanceof RpcConfigError) {
            context.log(`${command.serviceAndArg}: ${forced.message}`);
            return QREXEC_EXIT_PROBLEM;
          }
          const call = { serviceAndArg: command.serviceAndArg, source: command.source };
          const started = await serviceFromDirs(context.serviceDirs, call, runAs(forced ?? command.user))();
          // A file always wins: a guest image may ship its own version of a built-in service.
          const builtin = started === QREXEC_EXIT_SERVICE_NOT_FOUND && builtinService(command.serviceAndArg);
          return builtin ? builtin() : started;
        }
      : () => spawnProcess(shell[0] ?? '/bin/sh', [...shell.slice(1), command.command], process.env);
  const channel = await context.transport.connect(String(connectDomain), connectPort, {
    timeoutMs: DATA_CONNECT_TIMEOUT_MS,
  });
  channel.on('error', () => undefined);
  try {
    await serveDataChannel(channel, justExec ? detached(starter) : starter);
  } finally {
    channel.end();
  }
  return params;
}

/** MSG_JUST_EXEC: the command runs with its output discarded, and the caller only learns that it started. */
function detached(starter: ServiceStarter): ServiceStarter {
  return async () => {
    const started = await starter();
    if (typeof started === 'number') return started;
    started.stdin?.end();
    started.stdout?.resume();
    started.stderr?.resume();
    return 0;
  };
}
