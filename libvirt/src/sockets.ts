import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Which daemon serves a hypervisor driver when libvirt runs as modular daemons (one per driver),
 * as libvirt's own remote_sockets.c decides. Drivers not listed go to the legacy socket, which
 * virtproxyd serves in modular setups.
 */
const MODULAR_DAEMONS: Readonly<Record<string, string>> = {
  qemu: 'virtqemud',
  kvm: 'virtqemud',
  xen: 'virtxend',
  libxl: 'virtxend',
  vbox: 'virtvboxd',
  lxc: 'virtlxcd',
  ch: 'virtchd',
  bhyve: 'virtbhyved',
  vz: 'virtvzd',
  parallels: 'virtvzd',
  interface: 'virtinterfaced',
  network: 'virtnetworkd',
  nodedev: 'virtnodedevd',
  nwfilter: 'virtnwfilterd',
  secret: 'virtsecretd',
  storage: 'virtstoraged',
};

const LEGACY_DAEMON = 'libvirtd';
const LEGACY_SOCKET = 'libvirt-sock';
/** Query parameters the client-side remote driver consumes; the daemon must not see them. */
const CLIENT_ONLY_PARAMS = [
  'socket',
  'mode',
  'proxy',
  'no_verify',
  'no_tty',
  'pkipath',
  'keyfile',
  'sshauth',
];

/**
 * `legacy`: one libvirtd (Debian 12). `direct`: modular daemons. `auto`: legacy when its socket
 * exists, else direct; that is libvirt's own default.
 */
export type DaemonMode = 'auto' | 'legacy' | 'direct';

export interface SocketOptions {
  readOnly?: boolean;
  mode?: DaemonMode;
  /** Overrides the run directory (default /run/libvirt, or $XDG_RUNTIME_DIR/libvirt for session URIs). */
  runDir?: string;
}

export interface ResolvedSocket {
  /** UNIX socket path to connect to. */
  path: string;
  /** The daemon expected behind it, for messages. */
  daemon: string;
  /** The URI to send in CONNECT_OPEN: transport and client-only parameters removed. */
  uri: string;
}

export class UnsupportedUriError extends Error {
  override name = 'UnsupportedUriError';
}

/** Maps a libvirt URI to the local UNIX socket that serves it. */
export function resolveSocket(uri: string, options: SocketOptions = {}): ResolvedSocket {
  let parsed: URL;
  try {
    parsed = new URL(uri);
  } catch {
    throw new UnsupportedUriError(`not a libvirt URI: ${uri}`);
  }
  const [driver = '', transport] = parsed.protocol.slice(0, -1).split('+', 2);
  if (transport !== undefined && transport !== 'unix') {
    throw new UnsupportedUriError(
      `transport '${transport}' is not supported (only local UNIX sockets): ${uri}`,
    );
  }
  if (parsed.hostname !== '') {
    throw new UnsupportedUriError(`remote hosts are not supported (only local UNIX sockets): ${uri}`);
  }

  const params = parsed.searchParams;
  const explicit = params.get('socket');
  const mode = options.mode ?? (params.get('mode') as DaemonMode | null) ?? 'auto';
  for (const p of CLIENT_ONLY_PARAMS) params.delete(p);
  const query = params.toString();
  const openUri = `${driver}://${parsed.pathname}${query ? `?${query}` : ''}`;

  const session = parsed.pathname === '/session';
  const runDir =
    options.runDir ??
    (session
      ? join(process.env.XDG_RUNTIME_DIR ?? `/run/user/${process.getuid?.() ?? 0}`, 'libvirt')
      : '/run/libvirt');
  const suffix = options.readOnly && !session ? '-ro' : '';
  const modular = MODULAR_DAEMONS[driver];
  const legacyPath = join(runDir, LEGACY_SOCKET + suffix);

  if (explicit) return { path: explicit, daemon: modular ?? LEGACY_DAEMON, uri: openUri };
  const useLegacy = modular === undefined || mode === 'legacy' || (mode === 'auto' && existsSync(legacyPath));
  if (useLegacy) return { path: legacyPath, daemon: LEGACY_DAEMON, uri: openUri };
  return { path: join(runDir, `${modular}-sock${suffix}`), daemon: modular, uri: openUri };
}
