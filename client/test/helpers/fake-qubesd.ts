import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A request as received, byte for byte, plus its decoded parts for convenience. */
export interface RecordedRequest {
  raw: Buffer;
  method: string;
  arg: string;
  dest: string;
  payload: Buffer;
}

/**
 * What the server sends back: bytes (sent at once, then the connection is closed), or chunks written one
 * by one with a pause between them. With `repeat`, the stream then goes on like `admin.Events` does,
 * sending `repeat` after every pause until the client hangs up; the client having already half-closed,
 * a failing write is also the only way a server learns that it has gone.
 */
export type Reply =
  string | Buffer | { chunks: (string | Buffer)[]; pauseMs?: number; repeat?: string | Buffer };

export type Responder = (request: RecordedRequest) => Reply | Promise<Reply>;

/** Something the client can be pointed at, which records every request it receives. */
export interface QubesdTarget {
  readonly socketPath: string;
  readonly requests: RecordedRequest[];
  /** Requests as strings (`latin1`, so every byte maps to one character and NULs stay visible). */
  requestStrings(): string[];
  /** Resolves once the client has closed the connection that carried request `index`. */
  closed(index: number): Promise<void>;
  close(): Promise<void>;
}

function decode(raw: Buffer): RecordedRequest {
  const nul = raw.indexOf(0);
  const header = (nul < 0 ? raw : raw.subarray(0, nul)).toString('utf8');
  const [methodArg = '', , , dest = ''] = header.split(' ');
  const plus = methodArg.indexOf('+');
  return {
    raw,
    method: plus < 0 ? methodArg : methodArg.slice(0, plus),
    arg: plus < 0 ? '' : methodArg.slice(plus + 1),
    dest,
    payload: nul < 0 ? Buffer.alloc(0) : raw.subarray(nul + 1),
  };
}

const toBuffer = (data: string | Buffer): Buffer =>
  typeof data === 'string' ? Buffer.from(data, 'latin1') : data;

abstract class RecordingServer implements QubesdTarget {
  readonly requests: RecordedRequest[] = [];
  private readonly closedConnections: Promise<void>[] = [];
  protected server?: Server;
  private dir = '';

  get socketPath(): string {
    return join(this.dir, 'qubesd.sock');
  }

  requestStrings(): string[] {
    return this.requests.map((r) => r.raw.toString('latin1'));
  }

  closed(index: number): Promise<void> {
    const done = this.closedConnections[index];
    if (!done) throw new Error(`no request #${index}`);
    return done;
  }

  protected async listen(): Promise<void> {
    this.dir = await mkdtemp(join(tmpdir(), 'odyssey-client-test-'));
    // Half-open: the client half-closes to mark the end of its request, then reads the reply.
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve) => this.server?.listen(this.socketPath, resolve));
  }

  private accept(socket: Socket): void {
    const chunks: Buffer[] = [];
    const index = this.closedConnections.length;
    this.closedConnections.push(new Promise((resolve) => socket.once('close', () => resolve())));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // Like qubesd: nothing happens before the client's half-close.
    socket.on('end', () => {
      const request = decode(Buffer.concat(chunks));
      this.requests[index] = request;
      void this.answer(request, socket);
    });
  }

  protected abstract answer(request: RecordedRequest, socket: Socket): Promise<void>;

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A real UNIX-socket server that answers from a responder function. */
export class FakeQubesd extends RecordingServer {
  private constructor(private readonly responder: Responder) {
    super();
  }

  static async start(responder: Responder): Promise<FakeQubesd> {
    const server = new FakeQubesd(responder);
    await server.listen();
    return server;
  }

  protected async answer(request: RecordedRequest, socket: Socket): Promise<void> {
    const reply = await this.responder(request);
    if (typeof reply === 'string' || Buffer.isBuffer(reply)) {
      socket.end(toBuffer(reply));
      return;
    }
    for (const chunk of reply.chunks) {
      if (socket.destroyed) return;
      socket.write(toBuffer(chunk));
      await sleep(reply.pauseMs ?? 5);
    }
    if (reply.repeat === undefined) {
      socket.end();
      return;
    }
    while (!socket.destroyed) {
      socket.write(toBuffer(reply.repeat));
      await sleep(reply.pauseMs ?? 5);
    }
  }
}

/**
 * Forwards every request untouched to a real daemon's socket and relays its reply, recording the
 * request: the same request-byte assertions then hold against the real thing.
 */
export class RecordingProxy extends RecordingServer {
  private constructor(private readonly upstream: string) {
    super();
  }

  static async start(upstream: string): Promise<RecordingProxy> {
    const proxy = new RecordingProxy(upstream);
    await proxy.listen();
    return proxy;
  }

  protected answer(request: RecordedRequest, socket: Socket): Promise<void> {
    return new Promise((resolve) => {
      const daemon = createConnection(this.upstream, () => daemon.end(request.raw));
      daemon.pipe(socket);
      daemon.on('error', () => socket.destroy());
      socket.on('close', () => daemon.destroy());
      daemon.on('close', () => resolve());
    });
  }
}

/** Canned replies keyed by the exact request (as a latin1 string); anything else is answered with an error. */
export function cannedResponder(table: ReadonlyMap<string, Reply> | Record<string, Reply>): Responder {
  const map = table instanceof Map ? table : new Map(Object.entries(table));
  return (request) => {
    const key = request.raw.toString('latin1');
    const reply = map.get(key);
    if (reply !== undefined) return reply;
    return `2\0QubesException\0\0fake qubesd has no reply for ${JSON.stringify(key)}\0`;
  };
}

/**
 * The server the tests talk to: the fake with canned replies, or, when ODYSSEY_TEST_DAEMON_SOCKET names
 * the socket of a running odysseyd, a recording proxy in front of it (the canned table is then unused,
 * and only tests whose fixture state matches the daemon's can be expected to pass).
 */
export async function startTarget(
  table: ReadonlyMap<string, Reply> | Record<string, Reply>,
): Promise<QubesdTarget> {
  const daemon = process.env.ODYSSEY_TEST_DAEMON_SOCKET;
  return daemon ? RecordingProxy.start(daemon) : FakeQubesd.start(cannedResponder(table));
}
