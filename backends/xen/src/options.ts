import { connectionFromEnv, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';

/** ODYSSEY_LIBVIRT_URI (default xen:///system, libvirt's libxl driver) and ODYSSEY_LIBVIRT_SOCKET. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): LibvirtConnectionOptions {
  return connectionFromEnv('xen:///system', env);
}
