import { Proc } from './numbers.js';
import { readCharArray, readString, writeOptString } from './handles.js';
import { call, type RpcSource } from './rpc.js';
import type { RpcConnection } from '../connection.js';

/** remote_auth_type. */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** virConnectFlags for CONNECT_OPEN. */
export const ConnectFlags = { READ_ONLY: 1 } as const;

/** Driver features a client may ask about (libvirt_internal.h). */
export const DriverFeature = { PROGRAM_KEEPALIVE: 10 } as const;

export interface NodeInfo {
  model: string;
  /** KiB. */
  memory: bigint;
  cpus: number;
  mhz: number;
  nodes: number;
  sockets: number;
  cores: number;
  threads: number;
}

/** Splits libvirt's packed version number (major * 1e6 + minor * 1e3 + micro). */
export function parseVersion(v: bigint): { major: number; minor: number; micro: number } {
  const n = Number(v);
  return { major: Math.floor(n / 1e6), minor: Math.floor(n / 1e3) % 1000, micro: n % 1000 };
}

export class AuthUnsupportedError extends Error {
  override name = 'AuthUnsupportedError';
}

/** The handshake before CONNECT_OPEN: the daemon lists the auth schemes it accepts on this socket. */
export async function authenticate(rpc: RpcConnection): Promise<void> {
  const types = await rpc.call(Proc.AUTH_LIST, undefined, (r) => r.array((x) => x.int(), 20));
  if (types.length === 0 || types.includes(AuthType.NONE)) return;
  if (types.includes(AuthType.POLKIT)) {
    // The daemon asks polkit about our peer credentials; nothing to send.
    await rpc.call(Proc.AUTH_POLKIT, undefined, (r) => r.int());
    return;
  }
  throw new AuthUnsupportedError(
    `daemon requires auth types [${types.join(', ')}]; only none and polkit are supported`,
  );
}

export function openConnection(rpc: RpcConnection, uri: string | null, flags: number): Promise<void> {
  return rpc.call(Proc.CONNECT_OPEN, (w) => {
    writeOptString(w, uri);
    w.uint(flags);
  });
}

export function supportsFeature(rpc: RpcConnection, feature: number): Promise<boolean> {
  return rpc.call(
    Proc.CONNECT_SUPPORTS_FEATURE,
    (w) => w.int(feature),
    (r) => r.int() !== 0,
  );
}

/** Host-level calls on the open connection. */
export class HostApi {
  constructor(private readonly rpc: RpcSource) {}

  /** Hypervisor version, packed (see `parseVersion`). */
  getVersion(): Promise<bigint> {
    return call(this.rpc, Proc.CONNECT_GET_VERSION, undefined, (r) => r.uhyper());
  }

  /** libvirt (daemon) version, packed (see `parseVersion`). */
  getLibVersion(): Promise<bigint> {
    return call(this.rpc, Proc.CONNECT_GET_LIB_VERSION, undefined, (r) => r.uhyper());
  }

  /** The driver's name, e.g. "QEMU" or "TEST". */
  getType(): Promise<string> {
    return call(this.rpc, Proc.CONNECT_GET_TYPE, undefined, readString);
  }

  getHostname(): Promise<string> {
    return call(this.rpc, Proc.CONNECT_GET_HOSTNAME, undefined, readString);
  }

  /** The canonical URI of the open connection. */
  getUri(): Promise<string> {
    return call(this.rpc, Proc.CONNECT_GET_URI, undefined, readString);
  }

  /** Capabilities XML. */
  getCapabilities(): Promise<string> {
    return call(this.rpc, Proc.CONNECT_GET_CAPABILITIES, undefined, readString);
  }

  nodeGetInfo(): Promise<NodeInfo> {
    return call(this.rpc, Proc.NODE_GET_INFO, undefined, (r) => ({
      model: readCharArray(r, 32),
      memory: r.uhyper(),
      cpus: r.int(),
      mhz: r.int(),
      nodes: r.int(),
      sockets: r.int(),
      cores: r.int(),
      threads: r.int(),
    }));
  }
}
