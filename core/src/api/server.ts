import { chmod, unlink } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';

import { inject, injectable } from 'tsyringe';

import type { Log } from '../log.js';
import { TOKENS } from '../tokens.js';
import { API_TOKENS } from './tokens.js';
import { adminCallLine, fromDom0 } from './call-log.js';
import type { Dispatcher } from './dispatcher.js';
import { eventMessage, exceptionResponse, MAX_REQUEST_BYTES, okResponse, parseRequest } from '@odyssey/wire';
import type { Request } from '@odyssey/wire';

/** Whether something answers on a UNIX socket path (a stale socket file refuses). */
function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * The admin socket: one request per connection, read to EOF (64 KiB cap),
 * answered once (or streamed), then closed. Every connection is independent,
 * so a bad client never affects the others.
 */
@injectable()
export class AdminServer {
  private server: Server | null = null;
  private readonly connections = new Set<Socket>();
  private readonly inflight = new Set<Promise<void>>();
  /** Connections carrying an event stream: they only end when the client goes, or we close them. */
  private readonly streams = new Set<Socket>();

  constructor(
    @inject(API_TOKENS.Dispatcher) private readonly dispatcher: Dispatcher,
    @inject(TOKENS.Log) private readonly log: Log,
  ) {}

  async listen(path: string): Promise<void> {
    if (await socketAlive(path)) throw new Error(`socket ${path} is in use by a running daemon`);
    await unlink(path).catch(() => undefined);
    const server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, 0o660);
    this.server = server;
  }

  /** Stops accepting, waits for calls in progress (their saves included), closes event streams. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    for (const s of this.streams) s.destroy();
    await Promise.allSettled([...this.inflight]);
    for (const s of this.connections) s.destroy();
    await closed;
  }

  private accept(socket: Socket): void {
    this.connections.add(socket);
    const chunks: Buffer[] = [];
    let size = 0;
    let headerSeen = false;
    let handedOver = false;
    let closedResolve: () => void = () => undefined;
    const closed = new Promise<void>((r) => (closedResolve = r));
    socket.on('close', () => {
      this.connections.delete(socket);
      this.streams.delete(socket);
      closedResolve();
    });
    socket.on('error', () => socket.destroy());
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      chunks.push(chunk);
      if (!headerSeen) {
        const all = Buffer.concat(chunks);
        const nul = all.indexOf(0);
        if (nul !== -1) {
          headerSeen = true;
          const req = parseRequest(all.subarray(0, nul + 1));
          // Volume imports carry any amount of data: the payload goes to the handler as a stream.
          if (req && this.dispatcher.streamsPayload(req.method)) {
            handedOver = true;
            socket.off('data', onData);
            const payload = new PassThrough();
            payload.write(all.subarray(nul + 1));
            socket.pipe(payload);
            this.track(this.handle(socket, req, closed, payload));
            return;
          }
        }
      }
      if (size > MAX_REQUEST_BYTES) socket.destroy();
    };
    socket.on('data', onData);
    socket.on('end', () => {
      if (socket.destroyed || handedOver) return;
      const req = parseRequest(Buffer.concat(chunks));
      if (!req) {
        this.log('warn', 'framing error');
        socket.destroy();
        return;
      }
      this.track(this.handle(socket, req, closed));
    });
  }

  private track(call: Promise<void>): void {
    this.inflight.add(call);
    void call.finally(() => this.inflight.delete(call));
  }

  private async handle(
    socket: Socket,
    req: Request,
    closed: Promise<void>,
    payload?: Readable,
  ): Promise<void> {
    if (this.dispatcher.isStreaming(req.method)) this.streams.add(socket);
    const sink = {
      send: (subject: string, event: string, args: readonly (readonly [string, string])[]) => {
        if (!socket.destroyed && socket.writable) socket.write(eventMessage(subject, event, args));
      },
      closed,
    };
    // Calls from domains reached the socket through qrexec, whose policy allowed them (it logs what it denies).
    const call = { source: req.src, method: req.method, dest: req.dest, arg: req.arg };
    const logCall = fromDom0(req.src)
      ? () => undefined
      : (result: string) => this.log('info', adminCallLine(call, 'allow', `result=${result}`));
    // An event stream lasts as long as its client: it is logged as it begins.
    if (this.dispatcher.isStreaming(req.method)) logCall('stream');
    const outcome = await this.dispatcher.dispatch(req, sink, payload);
    if (outcome.kind === 'ok') logCall('ok');
    else if (outcome.kind === 'exception') logCall(outcome.type);
    else if (outcome.kind === 'abort') logCall('error');
    switch (outcome.kind) {
      case 'ok':
        socket.end(okResponse(outcome.body));
        break;
      case 'exception':
        this.log('debug', `${req.method} ${req.dest}: ${outcome.type}: ${outcome.message}`);
        socket.end(exceptionResponse(outcome.type, outcome.message));
        break;
      case 'streamed':
        socket.end();
        break;
      case 'abort':
        this.log(
          'error',
          `unhandled exception in ${req.method}: ${String((outcome.error as Error)?.stack ?? outcome.error)}`,
        );
        socket.destroy();
        break;
    }
  }
}
