/** Wire constants of qrexec (reference §4.1). Values are upstream's, byte for byte. */

export const QREXEC_PROTOCOL_VERSION = 4;
/** Oldest peer version a connection accepts. */
export const QREXEC_MIN_PROTOCOL_VERSION = 2;

export const MAX_DATA_CHUNK_V2 = 4096;
export const MAX_DATA_CHUNK_V3 = 65536;
export const MAX_SERVICE_NAME_LEN = 65000;
export const MAX_QREXEC_CMD_LEN = 65535;

export const VCHAN_BASE_PORT = 512;
export const VCHAN_BASE_DATA_PORT = VCHAN_BASE_PORT + 1;
/** Number of data ports a daemon hands out (513…768). */
export const MAX_DATA_PORTS = 256;

export const RPC_REQUEST_COMMAND = 'QUBESRPC';
export const NOGUI_CMD_PREFIX = 'nogui:';

export const QREXEC_EXIT_PROBLEM = 125;
export const QREXEC_EXIT_REQUEST_REFUSED = 126;
export const QREXEC_EXIT_SERVICE_NOT_FOUND = 127;

export const QREXEC_AGENT_TRIGGER_PATH = '/var/run/qubes/qrexec-agent';
export const QREXEC_SERVICE_DIRS: readonly string[] = [
  '/run/qubes-rpc',
  '/usr/local/etc/qubes-rpc',
  '/etc/qubes-rpc',
];

export const MsgType = {
  DATA_STDIN: 0x190,
  DATA_STDOUT: 0x191,
  DATA_STDERR: 0x192,
  DATA_EXIT_CODE: 0x193,
  EXEC_CMDLINE: 0x200,
  JUST_EXEC: 0x201,
  SERVICE_CONNECT: 0x202,
  SERVICE_REFUSED: 0x203,
  TRIGGER_SERVICE: 0x210,
  CONNECTION_TERMINATED: 0x211,
  TRIGGER_SERVICE3: 0x212,
  TRIGGER_SERVICE4: 0x213,
  HELLO: 0x300,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

export const MSG_HEADER_SIZE = 8;
export const EXEC_PARAMS_SIZE = 8;
export const SERVICE_PARAMS_SIZE = 32;
export const TRIGGER_SERVICE_PARAMS_SIZE = 128;
export const TRIGGER_SERVICE_PARAMS3_SIZE = 96;
export const TRIGGER_SERVICE_PARAMS4_SIZE = 160;
export const PEER_INFO_SIZE = 4;
