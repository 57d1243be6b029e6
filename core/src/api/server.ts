import { chmod, unlink } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { PassThrough } from 'node:stream';

import { inject, injectable } from 'tsyringe';

import type { Log } from '../log.js';
import { TOKENS } from '../tokens.js';
import { API_TOKENS } from './tokens.js';
import { adminCallLine, fromDom0 } from './call-log.js';
import type { Dispatcher } from './dispatcher.js';
import {
  eventMessage,
  exceptionResponse,
  MAX_REQUEST_BYTES,
  okResponse,
  parseRequest,
  type Request,
} from '@odyssey/wire';

/** What one client may cost the daemon, whatever it does (README "Limits"). */
export interface ServerLimits {
  /**
   * Bytes of events (admin.Events, admin.vm.Stats) queued for a client that
   * does not read them; past it the connection is closed.
   */
  readonly maxQueuedBytes: number;
  /** The same, summed over every event stream: many slow subscribers cannot add up past it. */
  readonly maxQueuedBytesTotal: number;
  /** Connections still sending their request; more are closed at once. */
  readonly maxPending: number;
  /**
   * Time to send the request (a streamed import: its header), and again to
   * take the whole reply once it is written.
   */
  readonly requestTimeoutMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxQueuedBytes: 4 * 1024 * 1024,
  maxQueuedBytesTotal: 64 * 1024 * 1024,
  maxPending: 256,
  requestTimeoutMs: 30_000,
};

/** Bytes queued on one event stream from which it counts as behind its reader. */
const LAGGING = 64 * 1024;

/** What the server holds right now, for limits checks and load reports. */
export interface ServerLoad {
  readonly connections: number;
  readonly pending: number;
  /** Bytes written to connections that their clients have not taken yet. */
  readonly queuedBytes: number;
}

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
 * so a bad client never affects the others: each is bounded in time until its
 * request is in, and in the bytes it leaves unread (ServerLimits).
 */
@injectable()
export class AdminServer {
  private server: Server | null = null;
  private readonly connections = new Set<Socket>();
  private readonly inflight = new Set<Promise<void>>();
  /** Connections carrying an event stream: they only end when the client goes, or we close them. */
  private readonly streams = new Set<Socket>();
  private pending = 0;

  constructor(
    @inject(API_TOKENS.Dispatcher) private readonly dispatcher: Dispatcher,
    @inject(TOKENS.Log) private readonly log: Log,
    private readonly limits: ServerLimits = DEFAULT_LIMITS,
  ) {}

  load(): ServerLoad {
    let queuedBytes = 0;
    for (const s of this.connections) queuedBytes += s.writableLength;
    return { connections: this.connections.size, pending: this.pending, queuedBytes };
  }

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
    if (this.pending >= this.limits.maxPending) {
      this.log('warn', `refused a connection: ${this.pending} requests are still being sent`);
      socket.destroy();
      return;
    }
    this.pending++;
    this.connections.add(socket);
    const deadline = setTimeout(() => {
      this.log(
        'warn',
        `closed a connection that sent no whole request in ${this.limits.requestTimeoutMs} ms`,
      );
      received();
      socket.destroy();
    }, this.limits.requestTimeoutMs);
    let requestIn = false;
    /** The request is complete (or the connection gone): it no longer counts as pending. */
    const received = () => {
      if (requestIn) return;
      requestIn = true;
      this.pending--;
      clearTimeout(deadline);
    };
    const chunks: Buffer[] = [];
    let size = 0;
    let headerSeen = false;
    let handedOver = false;
    let closedResolve: () => void = () => undefined;
    const closed = new Promise<void>((r) => (closedResolve = r));
    socket.on('close', () => {
      received();
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
            received();
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
      received();
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
    payload?: PassThrough,
  ): Promise<void> {
    if (this.dispatcher.isStreaming(req.method)) this.streams.add(socket);
    const sink = {
      send: (subject: string, event: string, args: readonly (readonly [string, string])[]) => {
        if (socket.destroyed || !socket.writable) return;
        const message = eventMessage(subject, event, args);
        // Events cannot wait for a slow reader: the daemon does not stop for one subscriber.
        const over = this.overQueued(socket, message.length);
        if (over) {
          this.log('warn', `closed ${req.method} of ${req.src}: ${over}`);
          socket.destroy();
          return;
        }
        socket.write(message);
      },
      closed,
    };
    // Calls from domains reached the socket through qrexec, whose policy allowed them (it logs what it denies).
    const logCall = fromDom0(req.src)
      ? () => undefined
      : (result: string) => this.log('info', adminCallLine(req, 'allow', `result=${result}`));
    // An event stream lasts as long as its client: it is logged as it begins.
    if (this.dispatcher.isStreaming(req.method)) logCall('stream');
    const outcome = await this.dispatcher.dispatch(req, sink, payload);
    if (outcome.kind === 'ok') logCall('ok');
    else if (outcome.kind === 'exception') logCall(outcome.type);
    else if (outcome.kind === 'abort') logCall('error');
    if (payload) {
      // A refused or failed import leaves data in flight: discard it, so the client can finish sending and read the answer.
      socket.unpipe(payload);
      socket.resume();
    }
    switch (outcome.kind) {
      case 'ok':
        this.reply(socket, req, okResponse(outcome.body));
        break;
      case 'exception':
        this.log('debug', `${req.method} ${req.dest}: ${outcome.type}: ${outcome.message}`);
        this.reply(socket, req, exceptionResponse(outcome.type, outcome.message));
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

  /** Why writing `bytes` more to an event stream would pass a limit, if it would. */
  private overQueued(socket: Socket, bytes: number): string | undefined {
    const own = socket.writableLength;
    const { maxQueuedBytes, maxQueuedBytesTotal } = this.limits;
    if (own + bytes > maxQueuedBytes) return `it left ${own} bytes unread (limit ${maxQueuedBytes})`;
    // Summing costs a walk over the streams: only a stream that is already behind pays it.
    if (own < LAGGING) return undefined;
    let total = bytes;
    for (const s of this.streams) total += s.writableLength;
    if (total > maxQueuedBytesTotal) {
      return `event streams together left ${total - bytes} bytes unread (limit ${maxQueuedBytesTotal})`;
    }
    return undefined;
  }

  /**
   * Writes the whole answer and closes; a client that does not take it in
   * time is dropped, so an unread reply is held only that long.
   */
  private reply(socket: Socket, req: Request, answer: Buffer): void {
    if (socket.destroyed) return;
    const deadline = setTimeout(() => {
      this.log(
        'warn',
        `closed ${req.method} of ${req.src}: its reply was not read in ${this.limits.requestTimeoutMs} ms`,
      );
      socket.destroy();
    }, this.limits.requestTimeoutMs);
    socket.once('close', () => clearTimeout(deadline));
    socket.end(answer);
  }
}
