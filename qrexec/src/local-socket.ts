import { chmod, mkdir, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { decodeExecParams, encodeExecParams, execCmdline } from './codec.js';
import { MsgType, QREXEC_EXIT_PROBLEM } from './constants.js';
import { runCallerSide, runServiceSide } from './data-phase.js';
import { QrexecProtocolError } from './errors.js';
import { MessageReader, writeMessage } from './framing.js';
import { exchangeHello } from './handshake.js';

/*
 * dom0's local qrexec socket of one domain (reference §4.2, upstream
 * `/var/run/qubes/qrexec.<domid>`), in a reduced form: the daemon sends
 * MSG_HELLO{3} and reads the client's; the client sends MSG_EXEC_CMDLINE
 * `exec_params{0, 0}` + `USER:COMMAND` (e.g. `DEFAULT:QUBESRPC qubes.VMShell+ dom0`).
 * Unlike upstream, the daemon does not hand out a data vchan port: the data
 * phase (§4.4) runs on the socket itself, the client sending STDIN and the
 * daemon relaying the service's STDOUT, STDERR and EXIT_CODE.
 */

/** The version of the local client protocol (upstream's QREXEC_CLIENT_PROTOCOL_VERSION). */
export const QREXEC_CLIENT_PROTOCOL_VERSION = 3;

/**
 * What the clients of one domain's socket can make odysseyd hold. Data moves
 * with backpressure: a side that stops reading makes the other side wait, so
 * each direction holds at most its stream buffer plus one chunk in each
 * stream and socket buffer; a call itself may last as long as its service.
 */
export interface LocalSocketLimits {
  /** Connections at once, calls in progress included; more are closed at once. */
  readonly maxConnections: number;
  /** Time from connecting to a complete request (HELLO and MSG_EXEC_CMDLINE). */
  readonly requestTimeoutMs: number;
  /** Bytes each of a call's stdin, stdout and stderr buffers before its writer waits. */
  readonly streamBufferBytes: number;
}

export const LOCAL_SOCKET_LIMITS: LocalSocketLimits = {
  maxConnections: 64,
  requestTimeoutMs: 30_000,
  streamBufferBytes: 64 * 1024,
};

export interface LocalCallStreams {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** Runs `cmdline` in the domain with the given streams; resolves with its exit code. */
export type LocalCommandRunner = (cmdline: string, streams: LocalCallStreams) => Promise<number>;

/** The local name of a domain's socket: `qrexec.<name>`. */
export function localSocketName(domain: string): string {
  return `qrexec.${domain}`;
}

/** Listens on `path` (mode 0600) and runs each client's command with `run`, within `limits`. */
export async function listenLocalSocket(
  path: string,
  run: LocalCommandRunner,
  log?: (message: string) => void,
  limits: Partial<LocalSocketLimits> = {},
): Promise<Server> {
  const limit: LocalSocketLimits = { ...LOCAL_SOCKET_LIMITS, ...limits };
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(path, { force: true });
  let connections = 0;
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    if (connections >= limit.maxConnections) {
      log?.(`local client refused: ${connections} connections already`);
      socket.destroy();
      return;
    }
    connections++;
    socket.once('close', () => connections--);
    serveLocalClient(socket, run, limit).catch((error: unknown) => {
      log?.(`local client: ${(error as Error).message}`);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  try {
    await chmod(path, 0o600);
  } catch (error) {
    server.close();
    throw error;
  }
  return server;
}

/**
 * Stops listening; closing a UNIX socket server unlinks its file (libuv), at
 * once, so a later server on the same path is never removed by this one.
 * Calls in progress go on.
 */
export function closeLocalSocket(server: Server): void {
  server.close();
}

/** HELLO both ways and the MSG_EXEC_CMDLINE, within the request deadline; returns the command line. */
async function readRequest(
  socket: Socket,
  reader: MessageReader,
  timeoutMs: number,
): Promise<{ version: number; cmdline: string }> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new QrexecProtocolError(`no request within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
  });
  const request = (async () => {
    const version = await exchangeHello(socket, reader, QREXEC_CLIENT_PROTOCOL_VERSION);
    const message = await reader.expect();
    if (message.type !== MsgType.EXEC_CMDLINE) {
      throw new QrexecProtocolError(`unsupported request 0x${message.type.toString(16)}`);
    }
    return { version, cmdline: execCmdline(decodeExecParams(message.payload).tail) };
  })();
  try {
    return await Promise.race([request, deadline]);
  } finally {
    clearTimeout(timer);
    request.catch(() => undefined);
  }
}

async function serveLocalClient(
  socket: Socket,
  run: LocalCommandRunner,
  limit: LocalSocketLimits,
): Promise<void> {
  const reader = new MessageReader(socket);
  const { version, cmdline } = await readRequest(socket, reader, limit.requestTimeoutMs);
  const highWaterMark = limit.streamBufferBytes;
  const stdin = new PassThrough({ highWaterMark });
  const stdout = new PassThrough({ highWaterMark });
  const stderr = new PassThrough({ highWaterMark });
  const exitCode = run(cmdline, { stdin, stdout, stderr }).then(
    (code) => code,
    (error: unknown) => {
      if (!stderr.writableEnded) stderr.write(`qrexec: ${(error as Error).message}\n`);
      return QREXEC_EXIT_PROBLEM;
    },
  );
  // The streams end once the call is over, whether or not the service ended them.
  void exitCode.then(() => {
    stdout.end();
    stderr.end();
  });
  await runServiceSide(socket, reader, version, { stdin, stdout, stderr, exitCode });
  socket.end();
}

/** The client end: connects to `path`, runs `cmdline` with `streams`, resolves with the exit code. */
export async function callLocalSocket(
  path: string,
  cmdline: string,
  streams: LocalCallStreams,
): Promise<number> {
  const socket = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => undefined);
  try {
    const reader = new MessageReader(socket);
    const version = await exchangeHello(socket, reader, QREXEC_CLIENT_PROTOCOL_VERSION);
    await writeMessage(
      socket,
      MsgType.EXEC_CMDLINE,
      encodeExecParams({ connectDomain: 0, connectPort: 0 }, cmdline),
    );
    return await runCallerSide(socket, reader, version, streams);
  } finally {
    socket.destroy();
  }
}
