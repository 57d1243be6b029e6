import { connectionFromEnv, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';

export type KvmEnvOptions = LibvirtConnectionOptions;

/** ODYSSEY_LIBVIRT_URI (default qemu:///system) and ODYSSEY_LIBVIRT_SOCKET. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): KvmEnvOptions {
  return connectionFromEnv('qemu:///system', env);
}
