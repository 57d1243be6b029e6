import { join } from 'node:path';

import { KVM_VCHAN_PORT_NAME } from '@odyssey/vchan';

/** Name of the virtio-serial port that carries every vchan of a guest (the guest finds it in /sys/class/virtio-ports). */
export const VCHAN_PORT_NAME = KVM_VCHAN_PORT_NAME;

/**
 * Where a domain's runtime files live. QEMU runs as libvirt's unprivileged user, so these
 * paths sit in directories it can traverse (libvirt relabels the files themselves).
 */
export class RuntimeFiles {
  constructor(readonly runtimeDir: string) {}

  domainsDir(): string {
    return join(this.runtimeDir, 'domains');
  }

  domainDir(name: string): string {
    return join(this.domainsDir(), name);
  }

  /** Everything the guest's serial console (ttyS0) printed, logged by QEMU, truncated at each start. */
  consoleLog(name: string): string {
    return join(this.domainDir(name), 'console.log');
  }

  /** The UNIX socket QEMU binds for the guest's vchan port. */
  vchanSocket(name: string): string {
    return join(this.domainDir(name), 'vchan.sock');
  }

  /** The cached verdict of the acceleration probe. */
  accelVerdict(): string {
    return join(this.runtimeDir, 'accel-probe.json');
  }

  probeDir(): string {
    return join(this.runtimeDir, 'accel-probe');
  }
}
