/** How the backend reaches libvirt, from the environment odysseyd runs in. */
export interface KvmEnvOptions {
  /** ODYSSEY_LIBVIRT_URI, default qemu:///system. */
  readonly uri: string;
  /** ODYSSEY_LIBVIRT_SOCKET: the daemon's socket, when it is not where the URI says. */
  readonly socketPath?: string;
}

export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): KvmEnvOptions {
  const socketPath = env['ODYSSEY_LIBVIRT_SOCKET'];
  return {
    uri: env['ODYSSEY_LIBVIRT_URI'] || 'qemu:///system',
    ...(socketPath ? { socketPath } : {}),
  };
}
