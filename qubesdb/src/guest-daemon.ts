import { setTimeout as sleep } from 'node:timers/promises';
import type { VchanTransport } from '@odyssey/hal';
import type { QdbMessage } from './codec.js';
import { QdbConnection } from './connection.js';
import { QubesDb, type QubesDbChange } from './database.js';
import { QubesDbProtocolError } from './errors.js';
import { isKeyPath } from './path.js';
import { QdbMsg, QUBESDB_VCHAN_PORT } from './protocol.js';

export interface GuestQubesDbOptions {
  readonly transport: VchanTransport;
  /** The domain's database; a fresh one by default. */
  readonly db?: QubesDb;
  /** How long one connection attempt waits for dom0's vchan (default 1 s, which bounds stop()); retried until stop(). */
  readonly connectTimeoutMs?: number;
  readonly log?: (message: string) => void;
}

const DOM0 = '0';
const RETRY_DELAY_MS = 1000;

/**
 * The domain's half of QubesDB, as upstream's qubesdb-daemon in a VM: it
 * connects to dom0's vchan, fetches the whole database, then applies dom0's
 * writes and removals as they come and sends the domain's own changes to
 * dom0. When dom0 goes away it connects again and fetches everything anew.
 */
export class GuestQubesDb {
  readonly db: QubesDb;
  readonly #options: GuestQubesDbOptions;
  readonly #stopping = new AbortController();
  #connection: QdbConnection | undefined;
  #synced = false;
  #loop: Promise<void> | undefined;
  #resolveReady: (() => void) | undefined;
  /** Resolves once the first copy of dom0's database has arrived. */
  readonly ready: Promise<void>;

  constructor(options: GuestQubesDbOptions) {
    this.#options = options;
    this.db = options.db ?? new QubesDb();
    this.ready = new Promise((resolve) => (this.#resolveReady = resolve));
    this.db.onChange((change) => this.#forward(change));
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#connection?.close();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    let unreachable = false;
    while (!signal.aborted) {
      try {
        const vchan = await this.#options.transport.connect(DOM0, QUBESDB_VCHAN_PORT, {
          timeoutMs: this.#options.connectTimeoutMs ?? 1000,
        });
        if (signal.aborted) {
          vchan.destroy();
          break;
        }
        unreachable = false;
        this.#synced = false;
        const connection = new QdbConnection(vchan, (message) => this.#handle(message, connection));
        this.#connection = connection;
        connection.send(QdbMsg.CmdMultiread, '');
        const error = await connection.closed;
        this.#connection = undefined;
        if (error) this.#log(`vchan to dom0 closed: ${error.message}`);
      } catch (error) {
        // Said once: a domain may wait long for dom0 (or run where dom0 serves no QubesDB).
        if (!unreachable && !signal.aborted) this.#log(`cannot reach dom0 yet: ${(error as Error).message}`);
        unreachable = true;
      }
      await sleep(RETRY_DELAY_MS, undefined, { signal }).catch(() => undefined);
    }
  }

  #handle(message: QdbMessage, connection: QdbConnection): void {
    const { type, path, data } = message;
    switch (type) {
      case QdbMsg.RespMultiread:
        if (this.#synced) throw new QubesDbProtocolError('multiread reply nobody asked for');
        if (path === '') {
          this.#synced = true;
          this.#resolveReady?.();
          return;
        }
        if (!isKeyPath(path)) throw new QubesDbProtocolError(`multiread entry ${JSON.stringify(path)}`);
        this.db.write(path, data, connection);
        return;
      case QdbMsg.CmdWrite:
        if (!isKeyPath(path)) throw new QubesDbProtocolError(`write of ${JSON.stringify(path)}`);
        connection.send(QdbMsg.RespOk, path);
        this.db.write(path, data, connection);
        return;
      case QdbMsg.CmdRm:
        if (data.length > 0 || this.db.matching(path).length === 0) {
          throw new QubesDbProtocolError(`rm of ${path} that this domain does not have`);
        }
        connection.send(QdbMsg.RespOk, path);
        this.db.rm(path, connection);
        return;
      case QdbMsg.RespOk:
        return;
      case QdbMsg.RespError:
        if (data.length > 0) throw new QubesDbProtocolError('error reply with data');
        this.#log(`dom0 refused a change of ${path}`);
        return;
      default:
        throw new QubesDbProtocolError(`unexpected message ${QdbMsg[type]} from dom0`);
    }
  }

  /** The domain's own changes go to dom0 once it has the database (as upstream, only while connected). */
  #forward(change: QubesDbChange): void {
    const connection = this.#connection;
    if (!connection || !this.#synced || change.origin === connection) return;
    if (change.kind === 'write') connection.send(QdbMsg.CmdWrite, change.path, change.value);
    else connection.send(QdbMsg.CmdRm, change.path);
  }

  #log(message: string): void {
    this.#options.log?.(`qubesdb: ${message}`);
  }
}
