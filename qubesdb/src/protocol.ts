/**
 * QubesDB's wire facts (QubesOS/qubes-core-qubesdb, include/qubesdb.h): one
 * message is a fixed header (type, NUL-terminated path, data length) and then
 * `data_len` bytes of value. The same messages go between dom0 and a domain
 * over vchan and between a daemon and its local clients over a UNIX socket.
 */
export enum QdbMsg {
  /** Read one key (local socket only). */
  CmdRead = 0,
  /** Write one key: from a local client, and on vchan in both directions. */
  CmdWrite = 1,
  /** Dump every entry whose path starts with the given prefix; '' dumps the whole database in reverse order. */
  CmdMultiread = 2,
  /** The paths under a prefix, without values (local socket only). */
  CmdList = 3,
  /** Remove a key, or every key under a path ending in '/'. */
  CmdRm = 4,
  /** Watch a key, or every key under a path ending in '/' (local socket only). */
  CmdWatch = 5,
  CmdUnwatch = 6,
  RespOk = 7,
  RespErrorNoent = 8,
  RespError = 9,
  RespRead = 10,
  /** One entry of a multiread; an empty path with no data ends the dump. */
  RespMultiread = 11,
  /** One path of a list; an empty path ends the list. */
  RespList = 12,
  /** A watched path changed; may arrive at any time, between the replies of another command. */
  RespWatch = 13,
}

/** Size of the path field, NUL included: a path has at most 63 bytes. */
export const QDB_MAX_PATH = 64;
/** A value's data_len must stay below this (upstream refuses data_len >= QDB_MAX_DATA). */
export const QDB_MAX_DATA = 3072;
/** The longest value a message may carry. */
export const QDB_MAX_VALUE = QDB_MAX_DATA - 1;

/** struct qdb_hdr on x86: type (1), path (64), 3 bytes of padding, data_len (u32, little-endian). */
export const HEADER_SIZE = 72;
export const PATH_OFFSET = 1;
export const DATA_LEN_OFFSET = 68;

/** The vchan port of QubesDB: dom0 listens on it for each domain, the domain's daemon connects. */
export const QUBESDB_VCHAN_PORT = 111;

/** Where a domain's QubesDB daemon serves its local clients (upstream's QDB_DAEMON_LOCAL_RW_PATH). */
export const QUBESDB_LOCAL_SOCKET = '/var/run/qubes/qubesdb.sock';
/** The read-only socket beside a read-write one (upstream: qubesdb.ro.sock, qubesdb.<name>.ro.sock). */
export function readOnlySocketPath(path: string): string {
  return path.replace(/(\.sock)?$/, '.ro.sock');
}

/** The directory of dom0's per-domain sockets `qubesdb.<name>.sock` (QDB_DAEMON_PATH_RW_PATTERN). */
export const QUBESDB_DOM0_SOCKET_DIR = '/var/run/qubes';

/** The local socket dom0 serves for the database of domain `name`. */
export function dom0SocketName(name: string): string {
  return `qubesdb.${name}.sock`;
}
