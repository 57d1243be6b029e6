import { connect, type Socket } from 'node:net';
import type { QdbMessage } from './codec.js';
import { QdbConnection } from './connection.js';
import { QubesDbError, QubesDbProtocolError } from './errors.js';
import { QdbMsg, QUBESDB_LOCAL_SOCKET } from './protocol.js';

/** Watch notifications kept for a caller that has not asked for them yet; more end the connection. */
export const MAX_QUEUED_WATCH_EVENTS = 4096;

interface Pending {
  readonly request: QdbMsg;
  readonly entries: [string, Buffer][];
  readonly resolve: (reply: Reply) => void;
  readonly reject: (error: Error) => void;
}

interface Reply {
  readonly type: QdbMsg;
  readonly data: Buffer;
  readonly entries: [string, Buffer][];
}

/**
 * A client of a QubesDB daemon's local socket (upstream's libqubesdb):
 * commands go one at a time in order; watch notifications may arrive between
 * the replies and wait in a queue for watchEvent().
 */
export class QubesDbClient {
  readonly #connection: QdbConnection;
  readonly #pending: Pending[] = [];
  readonly #events: string[] = [];
  #wakeWatch: ((path: string | null) => void) | undefined;
  #closedError: Error | undefined;

  private constructor(socket: Socket) {
    this.#connection = new QdbConnection(socket, (message) => this.#receive(message));
    void this.#connection.closed.then((error) => {
      this.#closedError = error ?? new QubesDbError('connection to the QubesDB daemon closed');
      for (const pending of this.#pending.splice(0)) pending.reject(this.#closedError);
      this.#wakeWatch?.(null);
    });
  }

  /** Connects to a daemon's socket; the default is the domain's own daemon (or $QUBESDB_SOCKET). */
  static connect(path = process.env['QUBESDB_SOCKET'] || QUBESDB_LOCAL_SOCKET): Promise<QubesDbClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new QubesDbClient(socket));
      });
    });
  }

  /** The value of `path`, or undefined when it does not exist. */
  async read(path: string): Promise<Buffer | undefined> {
    const reply = await this.#call(QdbMsg.CmdRead, path);
    if (reply.type === QdbMsg.RespRead) return reply.data;
    if (reply.type === QdbMsg.RespErrorNoent) return undefined;
    throw new QubesDbError(`cannot read ${path}`);
  }

  async write(path: string, value: Buffer | string): Promise<void> {
    const reply = await this.#call(QdbMsg.CmdWrite, path, value);
    if (reply.type !== QdbMsg.RespOk) throw new QubesDbError(`cannot write ${path}`);
  }

  /** Removes a key or a directory ('/'-terminated); false when nothing matched. */
  async rm(path: string): Promise<boolean> {
    const reply = await this.#call(QdbMsg.CmdRm, path);
    if (reply.type === QdbMsg.RespOk) return true;
    if (reply.type === QdbMsg.RespErrorNoent) return false;
    throw new QubesDbError(`cannot remove ${path}`);
  }

  /** Paths and values of the entries starting with `prefix`. */
  async multiread(prefix: string): Promise<[string, Buffer][]> {
    const reply = await this.#call(QdbMsg.CmdMultiread, prefix);
    if (reply.type !== QdbMsg.RespMultiread) throw new QubesDbError(`cannot read ${prefix}`);
    return reply.entries;
  }

  /** Paths starting with `prefix`. */
  async list(prefix: string): Promise<string[]> {
    const reply = await this.#call(QdbMsg.CmdList, prefix);
    if (reply.type !== QdbMsg.RespList) throw new QubesDbError(`cannot list ${prefix}`);
    return reply.entries.map(([path]) => path);
  }

  async watch(path: string): Promise<void> {
    const reply = await this.#call(QdbMsg.CmdWatch, path);
    if (reply.type !== QdbMsg.RespOk) throw new QubesDbError(`cannot watch ${path}`);
  }

  /** Removes one watch registration of `path`; false when there was none. */
  async unwatch(path: string): Promise<boolean> {
    const reply = await this.#call(QdbMsg.CmdUnwatch, path);
    return reply.type === QdbMsg.RespOk;
  }

  /** The next path a watch fired for; null once the connection is gone. */
  watchEvent(): Promise<string | null> {
    const queued = this.#events.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#closedError) return Promise.resolve(null);
    return new Promise((resolve) => (this.#wakeWatch = resolve));
  }

  close(): void {
    this.#connection.close();
  }

  #call(request: QdbMsg, path: string, value?: Buffer | string): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    return new Promise((resolve, reject) => {
      this.#pending.push({ request, entries: [], resolve, reject });
      try {
        this.#connection.send(request, path, value);
      } catch (error) {
        this.#pending.pop();
        reject(new QubesDbError((error as Error).message));
      }
    });
  }

  #receive({ type, path, data }: QdbMessage): void {
    if (type === QdbMsg.RespWatch) {
      const wake = this.#wakeWatch;
      this.#wakeWatch = undefined;
      if (wake) return wake(path);
      if (this.#events.length >= MAX_QUEUED_WATCH_EVENTS)
        throw new QubesDbProtocolError('too many watch notifications left unread');
      this.#events.push(path);
      return;
    }
    const pending = this.#pending[0];
    if (!pending) throw new QubesDbProtocolError(`unsolicited ${QdbMsg[type]}`);
    const listing = pending.request === QdbMsg.CmdMultiread || pending.request === QdbMsg.CmdList;
    if (listing && (type === QdbMsg.RespMultiread || type === QdbMsg.RespList)) {
      if (type !== (pending.request === QdbMsg.CmdList ? QdbMsg.RespList : QdbMsg.RespMultiread))
        throw new QubesDbProtocolError(`${QdbMsg[type]} in reply to ${QdbMsg[pending.request]}`);
      if (path !== '') {
        if (pending.entries.length >= 65536) throw new QubesDbProtocolError('listing without end');
        pending.entries.push([path, data]);
        return;
      }
    } else if (!QubesDbClient.#answers(pending.request, type)) {
      throw new QubesDbProtocolError(`${QdbMsg[type]} in reply to ${QdbMsg[pending.request]}`);
    }
    this.#pending.shift();
    pending.resolve({ type, data, entries: pending.entries });
  }

  static #answers(request: QdbMsg, reply: QdbMsg): boolean {
    if (reply === QdbMsg.RespError || reply === QdbMsg.RespErrorNoent) return true;
    return request === QdbMsg.CmdRead ? reply === QdbMsg.RespRead : reply === QdbMsg.RespOk;
  }
}
