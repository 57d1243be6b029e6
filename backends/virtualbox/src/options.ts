import { connectionFromEnv, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';

/** ODYSSEY_LIBVIRT_URI (default vbox:///session: VirtualBox VMs belong to a user) and ODYSSEY_LIBVIRT_SOCKET. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): LibvirtConnectionOptions {
  return connectionFromEnv('vbox:///session', env);
}
