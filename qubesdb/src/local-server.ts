import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import type { QdbMessage } from './codec.js';
import { QdbConnection } from './connection.js';
import { QubesDb } from './database.js';
import { isKeyPath } from './path.js';
import { QdbMsg } from './protocol.js';

/** Watches one client may hold at once; more are refused. */
export const MAX_WATCHES_PER_CLIENT = 256;

export interface LocalServerOptions {
  /** Refuse writes and removals (upstream's read-only socket). */
  readonly readOnly?: boolean;
}

export interface LocalListenOptions extends LocalServerOptions {
  /** The socket's mode; 0666 by default, as upstream's read-write socket. */
  readonly mode?: number;
  /**
   * Clients wait for this before their requests are answered: a domain's
   * daemon answers only once it has dom0's database, as upstream's daemon
   * opens its socket only after the first sync.
   */
  readonly ready?: Promise<void>;
}

/**
 * Serves one local client of a database in upstream's client protocol
 * (qubesdb-read and friends, python-qubesdb): every command, its replies, and
 * watch notifications at any time. A malformed message ends the connection;
 * a bad request gets an error reply as upstream gives.
 */
export function serveLocalClient(socket: Socket, db: QubesDb, options: LocalServerOptions = {}): void {
  const unwatch = new Map<string, (() => boolean)[]>();
  let watches = 0;
  const connection = new QdbConnection(socket, (message) => handle(message));
  void connection.closed.then(() => {
    for (const list of unwatch.values()) for (const remove of list) remove();
    unwatch.clear();
  });

  function handle({ type, path, data }: QdbMessage): void {
    const reply = (answer: QdbMsg): void => connection.send(answer, path);
    if (data.length > 0 && type !== QdbMsg.CmdWrite) return reply(QdbMsg.RespError);
    switch (type) {
      case QdbMsg.CmdRead: {
        const value = db.read(path);
        if (value === undefined) return reply(QdbMsg.RespErrorNoent);
        return connection.send(QdbMsg.RespRead, path, value);
      }
      case QdbMsg.CmdWrite:
        if (options.readOnly || !isKeyPath(path)) return reply(QdbMsg.RespError);
        reply(QdbMsg.RespOk);
        return db.write(path, data, connection);
      case QdbMsg.CmdRm:
        if (options.readOnly) return reply(QdbMsg.RespError);
        if (db.matching(path).length === 0) return reply(QdbMsg.RespErrorNoent);
        reply(QdbMsg.RespOk);
        db.rm(path, connection);
        return;
      case QdbMsg.CmdMultiread:
        for (const [key, value] of db.multiread(path)) connection.send(QdbMsg.RespMultiread, key, value);
        return connection.send(QdbMsg.RespMultiread, '');
      case QdbMsg.CmdList:
        for (const key of db.list(path)) connection.send(QdbMsg.RespList, key);
        return connection.send(QdbMsg.RespList, '');
      case QdbMsg.CmdWatch: {
        if (watches >= MAX_WATCHES_PER_CLIENT) return reply(QdbMsg.RespError);
        const list = unwatch.get(path) ?? [];
        list.push(db.watch(path, (changed) => connection.send(QdbMsg.RespWatch, changed)));
        unwatch.set(path, list);
        watches++;
        return reply(QdbMsg.RespOk);
      }
      case QdbMsg.CmdUnwatch: {
        const remove = unwatch.get(path)?.pop();
        if (!remove) return reply(QdbMsg.RespErrorNoent);
        remove();
        watches--;
        return reply(QdbMsg.RespOk);
      }
      default:
        return reply(QdbMsg.RespError);
    }
  }
}

/**
 * A database's local socket, as upstream's daemons serve /var/run/qubes/qubesdb.sock
 * in a domain and /var/run/qubes/qubesdb.<name>.sock in dom0.
 */
export class LocalQubesDbServer {
  readonly #server: Server;
  readonly #clients = new Set<Socket>();

  private constructor(
    readonly path: string,
    db: QubesDb,
    options: LocalListenOptions,
  ) {
    const ready = options.ready ?? Promise.resolve();
    this.#server = createServer({ pauseOnConnect: true }, (socket) => {
      this.#clients.add(socket);
      socket.on('close', () => this.#clients.delete(socket));
      socket.on('error', () => socket.destroy());
      void ready.then(() => {
        if (socket.destroyed) return;
        serveLocalClient(socket, db, options);
        socket.resume();
      });
    });
  }

  /** Listens on `path`, replacing a stale socket and creating its directory. */
  static async listen(
    path: string,
    db: QubesDb,
    options: LocalListenOptions = {},
  ): Promise<LocalQubesDbServer> {
    await mkdir(dirname(path), { recursive: true });
    await rm(path, { force: true });
    const local = new LocalQubesDbServer(path, db, options);
    await new Promise<void>((resolve, reject) => {
      local.#server.once('error', reject);
      local.#server.listen(path, () => {
        local.#server.off('error', reject);
        resolve();
      });
    });
    await chmod(path, options.mode ?? 0o666);
    return local;
  }

  /** Stops listening, drops the clients, and removes the socket. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const client of this.#clients) client.destroy();
    await closed;
    await rm(this.path, { force: true });
  }
}
