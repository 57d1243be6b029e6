import { join } from 'node:path';

/** Where a container finds its vchan directory: the bind mount's target inside the domain. */
export const GUEST_VCHAN_DIR = '/var/run/odyssey-vchan';

/** Where a domain's files live under the backend's runtime dir. */
export class RuntimeFiles {
  constructor(readonly runtimeDir: string) {}

  domainsDir(): string {
    return join(this.runtimeDir, 'lxc');
  }

  domainDir(name: string): string {
    return join(this.domainsDir(), name);
  }

  /**
   * The domain's vchan sockets, bind-mounted at GUEST_VCHAN_DIR: owned by the domain's root uid
   * on the host, mode 0700, so only that domain and dom0 (root) get in.
   */
  vchanDir(name: string): string {
    return join(this.domainDir(name), 'vchan');
  }

  /**
   * Left in the vchan dir by the container's init when its agent ended on its own with a failure
   * (build-rootfs.sh): libvirt reports every end of a container's init as a shutdown.
   */
  crashMark(name: string): string {
    return join(this.vchanDir(name), 'odyssey-crashed');
  }

  /** The first host uid of the domain's range, kept while the domain is defined. */
  uidBaseFile(name: string): string {
    return join(this.domainDir(name), 'uid-base');
  }

  /** The image-file volumes mounted at start (JSON, written at define). */
  imagesFile(name: string): string {
    return join(this.domainDir(name), 'images.json');
  }

  /** Present while the domain is defined with an uplink (written at define): slirp-uplinks.ts serves it. */
  uplinkFile(name: string): string {
    return join(this.domainDir(name), 'uplink');
  }

  /** Present while the domain's definition is for a root that boots systemd (shut down through initctl). */
  systemdFile(name: string): string {
    return join(this.domainDir(name), 'systemd-root');
  }

  /** Where a domain's image-file volume of `role` is mounted, idmapped, for libvirt_lxc to bind. */
  imageMountDir(name: string, role: string): string {
    return join(this.domainDir(name), 'mnt', role);
  }
}
