import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { constants } from 'node:os';
import { PassThrough } from 'node:stream';
import { readPastGonePeer } from '@odyssey/hal';
import { splitServiceAndArg } from './command.js';
import type { ServiceSideStreams } from './data-phase.js';
import type { ServiceEntry } from './service-lookup.js';

/** Who calls a service, and how the target was asked for (the latter only in dom0). */
export interface ServiceInvocation {
  readonly serviceAndArg: string;
  readonly source: string;
  /** dom0 only: the normalised target the caller requested (`work`, `@adminvm`, …). */
  readonly requestedTarget?: string;
}

/** The bytes a socket service receives first (reference §5): dom0 adds the target, a VM does not. */
export function serviceDescriptor(call: ServiceInvocation): string {
  if (call.requestedTarget === undefined) return `${call.serviceAndArg} ${call.source}\0`;
  const { type, target } = requestedTargetParts(call.requestedTarget);
  return `${call.serviceAndArg} ${call.source} ${type} ${target}\0`;
}

function requestedTargetParts(requestedTarget: string): { type: 'name' | 'keyword'; target: string } {
  return requestedTarget.startsWith('@')
    ? { type: 'keyword', target: requestedTarget.slice(1) }
    : { type: 'name', target: requestedTarget };
}

const KEPT_QREXEC_VARIABLES = new Set(['QREXEC_SERVICE_PATH', 'QREXEC_AGENT_PID']);

/** The environment of an executable service (reference §4.6). */
export function serviceEnvironment(base: NodeJS.ProcessEnv, call: ServiceInvocation): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(base)) {
    if (!key.startsWith('QREXEC') || KEPT_QREXEC_VARIABLES.has(key)) env[key] = value;
  }
  const { argument, hasArgument } = splitServiceAndArg(call.serviceAndArg);
  env['QREXEC_SERVICE_FULL_NAME'] = call.serviceAndArg;
  env['QREXEC_REMOTE_DOMAIN'] = call.source;
  if (hasArgument) env['QREXEC_SERVICE_ARGUMENT'] = argument;
  if (call.requestedTarget === undefined) {
    env['QREXEC_REQUESTED_TARGET_TYPE'] = '';
  } else {
    const { type, target } = requestedTargetParts(call.requestedTarget);
    env['QREXEC_REQUESTED_TARGET_TYPE'] = type;
    env[type === 'name' ? 'QREXEC_REQUESTED_TARGET' : 'QREXEC_REQUESTED_TARGET_KEYWORD'] = target;
  }
  return env;
}

/**
 * Starts a found service. Resolves once it runs (socket connected, process
 * spawned); rejects when it cannot be started, which callers report as exit 125.
 * `runAs` is a command that runs an executable service as the caller's user (`runuser -u USER --`);
 * a socket service is its listener's, whoever that runs as.
 */
export function startService(
  entry: ServiceEntry,
  call: ServiceInvocation,
  runAs: readonly string[] = [],
): Promise<ServiceSideStreams> {
  return entry.kind === 'socket'
    ? connectSocketService(entry.path, call)
    : spawnExecutable(entry.path, call, runAs);
}

function connectSocketService(path: string, call: ServiceInvocation): Promise<ServiceSideStreams> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      // After the connection, errors only end the call; close reports exit code 0 as upstream does.
      socket.on('error', () => undefined);
      // A service may answer and hang up without reading all it was sent: the caller's next bytes
      // then meet a broken pipe, and the answer ends in a reset instead of EOF. Neither may lose
      // the answer, nor leave the call without its exit code.
      readPastGonePeer(socket);
      const stdout = new PassThrough();
      socket.pipe(stdout);
      socket.once('close', () => stdout.end());
      const exitCode = new Promise<number>((done) => socket.once('close', () => done(0)));
      socket.write(serviceDescriptor(call));
      resolve({ stdin: socket, stdout, stderr: null, exitCode });
    });
  });
}

function spawnExecutable(
  path: string,
  call: ServiceInvocation,
  runAs: readonly string[],
): Promise<ServiceSideStreams> {
  const { argument } = splitServiceAndArg(call.serviceAndArg);
  const [file = path, ...args] = [...runAs, path, ...(argument ? [argument] : [])];
  return spawnProcess(file, args, serviceEnvironment(process.env, call));
}

/** Runs a program with piped stdio as the service end of a call. */
export function spawnProcess(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<ServiceSideStreams> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.once('error', reject);
    child.once('spawn', () => {
      child.off('error', reject);
      child.on('error', () => undefined);
      const exitCode = new Promise<number>((done) =>
        child.once('close', (code, signal) =>
          done(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0)),
        ),
      );
      // A child of the service may hold its output open: hanging up closes our ends too.
      const hangup = (): void => {
        child.kill('SIGHUP');
        child.stdout.destroy();
        child.stderr.destroy();
      };
      resolve({ stdin: child.stdin, stdout: child.stdout, stderr: child.stderr, exitCode, hangup });
    });
  });
}
