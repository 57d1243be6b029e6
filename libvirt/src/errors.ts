import type { XdrReader } from './xdr.js';

/** virErrorNumber values callers commonly branch on (libvirt's virterror.h). */
export const ErrorCode = {
  OK: 0,
  INTERNAL_ERROR: 1,
  NO_MEMORY: 2,
  NO_SUPPORT: 3,
  NO_CONNECT: 5,
  INVALID_CONN: 6,
  INVALID_DOMAIN: 7,
  INVALID_ARG: 8,
  OPERATION_FAILED: 9,
  XML_ERROR: 27,
  DOM_EXIST: 28,
  OPERATION_DENIED: 29,
  SYSTEM_ERROR: 38,
  RPC: 39,
  NO_DOMAIN: 42,
  AUTH_FAILED: 45,
  INVALID_STORAGE_POOL: 46,
  INVALID_STORAGE_VOL: 47,
  NO_STORAGE_POOL: 49,
  NO_STORAGE_VOL: 50,
  OPERATION_INVALID: 55,
  CONFIG_UNSUPPORTED: 67,
  OPERATION_TIMEOUT: 68,
  INVALID_STREAM: 73,
  OPERATION_ABORTED: 78,
  AUTH_CANCELLED: 79,
  OPERATION_UNSUPPORTED: 84,
  AGENT_UNRESPONSIVE: 86,
  RESOURCE_BUSY: 87,
  ACCESS_DENIED: 88,
  STORAGE_VOL_EXIST: 90,
  AUTH_UNAVAILABLE: 94,
} as const;

/** virErrorLevel. */
export const ErrorLevel = { NONE: 0, WARNING: 1, ERROR: 2 } as const;

export interface RemoteErrorFields {
  code: number;
  domain: number;
  message: string;
  level: number;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

/** An error reported by the daemon, with every field of its `remote_error`. */
export class LibvirtError extends Error implements RemoteErrorFields {
  override name = 'LibvirtError';
  readonly code: number;
  /** virErrorDomain: which part of libvirt raised it (10 = QEMU, 12 = test driver, 7 = RPC, ...). */
  readonly domain: number;
  readonly level: number;
  readonly str1: string | null;
  readonly str2: string | null;
  readonly str3: string | null;
  readonly int1: number;
  readonly int2: number;
  /** The procedure whose call failed, for diagnostics. */
  readonly procedure: number;

  constructor(fields: RemoteErrorFields, procedure: number) {
    super(fields.message);
    this.code = fields.code;
    this.domain = fields.domain;
    this.level = fields.level;
    this.str1 = fields.str1;
    this.str2 = fields.str2;
    this.str3 = fields.str3;
    this.int1 = fields.int1;
    this.int2 = fields.int2;
    this.procedure = procedure;
  }
}

/** The connection went away (closed, daemon died, keepalive timed out) before a call completed. */
export class ConnectionClosedError extends Error {
  override name = 'ConnectionClosedError';
}

const skipNetwork = (r: XdrReader): void => {
  r.string();
  r.fixedOpaque(16);
};
const skipDomain = (r: XdrReader): void => {
  skipNetwork(r);
  r.int();
};

export function decodeRemoteError(r: XdrReader): RemoteErrorFields {
  const code = r.int();
  const domain = r.int();
  const message = r.optional((x) => x.string()) ?? 'unknown libvirt error';
  const level = r.int();
  r.optional(skipDomain);
  const str1 = r.optional((x) => x.string());
  const str2 = r.optional((x) => x.string());
  const str3 = r.optional((x) => x.string());
  const int1 = r.int();
  const int2 = r.int();
  r.optional(skipNetwork);
  return { code, domain, message, level, str1, str2, str3, int1, int2 };
}

export const isLibvirtError = (err: unknown, code?: number): err is LibvirtError =>
  err instanceof LibvirtError && (code === undefined || err.code === code);
