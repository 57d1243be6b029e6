import { join } from 'node:path';

/** Where a domain's host-side files live under the backend's runtime dir. */
export class RuntimeFiles {
  constructor(readonly runtimeDir: string) {}

  domainsDir(): string {
    return join(this.runtimeDir, 'virtualbox');
  }

  domainDir(name: string): string {
    return join(this.domainsDir(), name);
  }

  /**
   * VirtualBox's end of the domain's vchan serial port: its host pipe, a UNIX socket on Linux.
   * libvirt leaves the port in client mode, so dom0 listens here and VirtualBox connects.
   */
  vchanPipe(name: string): string {
    return join(this.domainDir(name), 'vchan.pipe');
  }

  /** Where dom0's vchan transport dials the domain's channel while VirtualBox is connected (PipeMeeting). */
  vchanSocket(name: string): string {
    return join(this.domainDir(name), 'vchan.sock');
  }
}
