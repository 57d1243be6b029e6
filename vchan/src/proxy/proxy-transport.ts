import { VchanError, type VchanListenOptions, type VchanTransport } from '@odyssey/hal';

import { SocketVchan } from '../socket-vchan.js';
import { connectOnce } from '../unix-socket.js';
import { readLine, type ProxyReply, type ProxyRequest } from './protocol.js';

export interface ProxyVchanTransportOptions {
  /** The socket of the process that owns the domain's transport (serveVchanProxy). */
  readonly path: string;
  /** Ring size the local end buffers per direction; default 64 KiB, what qrexec asks for. */
  readonly ringSize?: number;
}

const DEFAULT_RING = 64 * 1024;

/** The client of serveVchanProxy: vchans of a domain whose transport another process owns. */
export class ProxyVchanTransport implements VchanTransport {
  readonly name = 'proxy';
  readonly #path: string;
  readonly #ring: number;

  constructor(options: ProxyVchanTransportOptions) {
    this.#path = options.path;
    this.#ring = options.ringSize ?? DEFAULT_RING;
  }

  listen(remoteDomain: string, port: number, options?: VchanListenOptions): Promise<SocketVchan> {
    return this.#open({ op: 'listen', domain: remoteDomain, port, ...options });
  }

  connect(remoteDomain: string, port: number, options?: { timeoutMs?: number }): Promise<SocketVchan> {
    return this.#open({ op: 'connect', domain: remoteDomain, port, ...options });
  }

  async #open(request: ProxyRequest): Promise<SocketVchan> {
    const what = `vchan ${request.op} ${request.domain}:${request.port} through ${this.#path}`;
    const socket = await connectOnce(this.#path).catch((error: unknown) => {
      throw new VchanError(`${what}: ${(error as Error).message}`, { cause: error });
    });
    try {
      socket.write(`${JSON.stringify(request)}\n`);
      const answer = JSON.parse(await readLine(socket)) as ProxyReply;
      if (!answer.ok) throw new VchanError(`${what}: ${answer.error}`);
    } catch (error) {
      socket.destroy();
      throw error instanceof VchanError ? error : new VchanError(`${what}: ${(error as Error).message}`);
    }
    const rings = {
      readRing: Math.max(this.#ring, request.op === 'listen' ? (request.readMin ?? 0) : 0),
      writeRing: Math.max(this.#ring, request.op === 'listen' ? (request.writeMin ?? 0) : 0),
    };
    return new SocketVchan(request.domain, request.port, rings, socket);
  }
}
