export { QubesDbClient, MAX_QUEUED_WATCH_EVENTS } from './client.js';
export { decodeHeader, encodeMessage, QdbDecoder, type QdbHeader, type QdbMessage } from './codec.js';
export { QdbConnection, MAX_PENDING_OUTPUT } from './connection.js';
export { QubesDb, type QubesDbChange, type WatchListener } from './database.js';
export { serveDom0Session, MAX_DOMAIN_DB_KEYS, type Dom0SessionOptions } from './dom0-session.js';
export { QubesDbError, QubesDbProtocolError } from './errors.js';
export { GuestQubesDb, type GuestQubesDbOptions } from './guest-daemon.js';
export {
  LocalQubesDbServer,
  serveLocalClient,
  MAX_WATCHES_PER_CLIENT,
  type LocalListenOptions,
  type LocalServerOptions,
} from './local-server.js';
export { isDirPath, isKeyPath, isValidPath, isValidValue } from './path.js';
export {
  dom0SocketName,
  DATA_LEN_OFFSET,
  HEADER_SIZE,
  PATH_OFFSET,
  QDB_MAX_DATA,
  QDB_MAX_PATH,
  QDB_MAX_VALUE,
  QdbMsg,
  QUBESDB_DOM0_SOCKET_DIR,
  QUBESDB_LOCAL_SOCKET,
  QUBESDB_VCHAN_PORT,
  readOnlySocketPath,
} from './protocol.js';
export { Dom0QubesDbServer, type Dom0QubesDbServerOptions } from './dom0-server.js';
