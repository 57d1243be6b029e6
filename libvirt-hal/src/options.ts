/** How a backend reaches libvirt. */
export interface LibvirtConnectionOptions {
  /** The libvirt URI, e.g. qemu:///system. */
  readonly uri: string;
  /** The daemon's socket, when it is not where the URI says. */
  readonly socketPath?: string;
}

/**
 * The connection from the environment odysseyd runs in: ODYSSEY_LIBVIRT_URI (else `defaultUri`)
 * and ODYSSEY_LIBVIRT_SOCKET.
 */
export function connectionFromEnv(
  defaultUri: string,
  env: NodeJS.ProcessEnv = process.env,
): LibvirtConnectionOptions {
  const socketPath = env['ODYSSEY_LIBVIRT_SOCKET'];
  return {
    uri: env['ODYSSEY_LIBVIRT_URI'] || defaultUri,
    ...(socketPath ? { socketPath } : {}),
  };
}
