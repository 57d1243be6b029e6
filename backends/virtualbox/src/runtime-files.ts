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
   * The host end of the domain's vchan serial port: VirtualBox's host pipe, which on Linux is a
   * UNIX socket VirtualBox binds (server mode) and dom0 connects to.
   */
  vchanPipe(name: string): string {
    return join(this.domainDir(name), 'vchan.pipe');
  }
}
