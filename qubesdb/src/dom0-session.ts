import type { Duplex } from 'node:stream';
import type { QdbMessage } from './codec.js';
import { QdbConnection } from './connection.js';
import { QubesDb, type QubesDbChange } from './database.js';
import { QubesDbProtocolError } from './errors.js';
import { isKeyPath } from './path.js';
import { QdbMsg } from './protocol.js';

/** A domain may not grow its database past this many keys (upstream sets no limit). */
export const MAX_DOMAIN_DB_KEYS = 4096;

export interface Dom0SessionOptions {
  readonly log?: (message: string) => void;
}

/**
 * dom0's end of one domain's QubesDB vchan, as upstream's per-domain
 * qubesdb-daemon in dom0: the domain asks once for the whole database
 * (multiread), dom0 then sends every later change of its own as a write or
 * rm; the domain may write and remove keys too. Any message outside that
 * exchange ends the connection, as upstream treats a vchan peer.
 */
export function serveDom0Session(
  stream: Duplex,
  db: QubesDb,
  options: Dom0SessionOptions = {},
): Promise<Error | undefined> {
  const log = options.log ?? (() => undefined);
  let synced = false;
  const connection = new QdbConnection(stream, (message) => handle(message));
  const forward = (change: QubesDbChange): void => {
    if (!synced || change.origin === connection) return;
    if (change.kind === 'write') connection.send(QdbMsg.CmdWrite, change.path, change.value);
    else connection.send(QdbMsg.CmdRm, change.path);
  };
  const stopForwarding = db.onChange(forward);
  void connection.closed.then(stopForwarding);

  function handle(message: QdbMessage): void {
    const { type, path, data } = message;
    switch (type) {
      case QdbMsg.CmdMultiread:
        if (synced) throw new QubesDbProtocolError('a second multiread on the vchan');
        if (data.length > 0) throw new QubesDbProtocolError('multiread with data');
        for (const [key, value] of db.multiread(path)) connection.send(QdbMsg.RespMultiread, key, value);
        connection.send(QdbMsg.RespMultiread, '');
        synced = true;
        return;
      case QdbMsg.CmdWrite:
        if (!isKeyPath(path)) throw new QubesDbProtocolError(`write of ${JSON.stringify(path)}`);
        if (!db.has(path) && db.size >= MAX_DOMAIN_DB_KEYS)
          throw new QubesDbProtocolError('the domain wrote too many keys');
        connection.send(QdbMsg.RespOk, path);
        db.write(path, data, connection);
        return;
      case QdbMsg.CmdRm:
        if (data.length > 0) {
          connection.send(QdbMsg.RespError, path);
          return;
        }
        if (db.matching(path).length === 0) {
          // Upstream takes a failed rm from the peer as the two databases having diverged.
          connection.send(QdbMsg.RespErrorNoent, path);
          throw new QubesDbProtocolError(`rm of missing ${path}`);
        }
        connection.send(QdbMsg.RespOk, path);
        db.rm(path, connection);
        return;
      case QdbMsg.RespOk:
        return;
      case QdbMsg.RespError:
        if (data.length > 0) throw new QubesDbProtocolError('error reply with data');
        log(`domain refused a change of ${path}`);
        return;
      default:
        throw new QubesDbProtocolError(`unexpected message ${QdbMsg[type]} on the vchan`);
    }
  }

  return connection.closed;
}
