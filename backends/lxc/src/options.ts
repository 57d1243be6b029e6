import { connectionFromEnv, type LibvirtConnectionOptions } from '@odyssey/libvirt-hal';

export interface LxcEnvOptions extends LibvirtConnectionOptions {
  /** The root tree of domains without a root volume of their own (scripts/build-rootfs.sh). */
  readonly rootDir?: string;
}

/** ODYSSEY_LIBVIRT_URI (default lxc:///system), ODYSSEY_LIBVIRT_SOCKET and ODYSSEY_LXC_ROOTFS. */
export function optionsFromEnv(env: NodeJS.ProcessEnv = process.env): LxcEnvOptions {
  const rootDir = env['ODYSSEY_LXC_ROOTFS'];
  return { ...connectionFromEnv('lxc:///system', env), ...(rootDir ? { rootDir } : {}) };
}
