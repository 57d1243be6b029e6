import { mkdir, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { VchanError, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';
import { defaultSocketDir, vchanSocketPath } from './socket-path.js';
import { SocketVchan } from './socket-vchan.js';
import { stopWaitingOnAbort } from './listen-signal.js';
import { connectOnce } from './unix-socket.js';

export interface SocketVchanTransportOptions {
  /** This end's domain as it appears in socket names (upstream uses the domain number). */
  readonly localDomain: string;
  /** Directory of the sockets; default $VCHAN_SOCKET_DIR or /var/run/vchan. */
  readonly dir?: string;
  /** Ring size of each direction in bytes; default 64 KiB, what qrexec asks for. */
  readonly ringSize?: number;
  /** How long connect() waits for the server's socket; default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Pause between connection attempts while the server is not there yet. */
  readonly retryIntervalMs?: number;
}

/** A socket vchan server that is bound but may still wait for its client. */
export interface BoundSocketVchan {
  readonly vchan: SocketVchan;
  /** Resolves when the client connected; rejects if the vchan is destroyed first. */
  readonly connected: Promise<SocketVchan>;
}

const DEFAULT_RING = 64 * 1024;
/** EACCES: a server in another user's domain (lxc) opens its socket's mode just after binding it. */
const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN', 'EACCES']);

/** vchan over AF_UNIX stream sockets, for process domains and tests (reference §3.4). */
export class SocketVchanTransport implements VchanTransport {
  readonly name = 'socket';
  readonly localDomain: string;
  readonly dir: string;
  readonly #ring: number;
  readonly #connectTimeoutMs: number;
  readonly #retryIntervalMs: number;

  constructor(options: SocketVchanTransportOptions) {
    this.localDomain = options.localDomain;
    this.dir = options.dir ?? defaultSocketDir();
    this.#ring = options.ringSize ?? DEFAULT_RING;
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.#retryIntervalMs = options.retryIntervalMs ?? 10;
  }

  async listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<SocketVchan> {
    return (await this.bind(remoteDomain, port, options)).connected;
  }

  /**
   * The server side split in two steps, so a caller can observe the waiting
   * state: the socket exists once this resolves, the client arrives later.
   */
  async bind(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<BoundSocketVchan> {
    const path = vchanSocketPath(this.dir, this.localDomain, remoteDomain, port);
    const rings = {
      readRing: Math.max(this.#ring, options?.readMin ?? 0),
      writeRing: Math.max(this.#ring, options?.writeMin ?? 0),
    };
    await mkdir(this.dir, { recursive: true });
    await rm(path, { force: true });
    const vchan = new SocketVchan(remoteDomain, port, rings);
    const server = createServer({ pauseOnConnect: true });
    // close() unlinks the path at once (libuv); a later unlink could take the
    // socket of the next server on this port (the QubesDB server listens again
    // as soon as a short connection ends).
    const stopListening = (): void => {
      if (server.listening) server.close();
    };
    const connected = new Promise<SocketVchan>((resolve, reject) => {
      server.on('connection', (socket: Socket) => {
        if (vchan.state() !== 'waiting') {
          socket.destroy();
          return;
        }
        stopListening();
        vchan.attach(socket);
        socket.resume();
        resolve(vchan);
      });
      vchan.onDestroyWhileWaiting(() => {
        stopListening();
        reject(new VchanError(`vchan server ${path} closed before a client connected`));
      });
    });
    connected.catch(() => undefined);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    stopWaitingOnAbort(vchan, connected, options?.signal);
    return { vchan, connected };
  }

  async connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<SocketVchan> {
    const path = vchanSocketPath(this.dir, remoteDomain, this.localDomain, port);
    const deadline = Date.now() + (options?.timeoutMs ?? this.#connectTimeoutMs);
    for (;;) {
      try {
        const socket = await connectOnce(path);
        return new SocketVchan(remoteDomain, port, { readRing: this.#ring, writeRing: this.#ring }, socket);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (!code || !RETRYABLE.has(code))
          throw new VchanError(`cannot connect to ${path}`, { cause: error });
        if (Date.now() >= deadline) {
          throw new VchanError(`timed out connecting to vchan ${remoteDomain}:${port} (${path})`, {
            cause: error,
          });
        }
        await sleep(this.#retryIntervalMs);
      }
    }
  }
}
