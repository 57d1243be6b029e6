import { supported, unsupported, type VmmCapabilities } from '@odyssey/hal';

export const NO_SUSPEND =
  'a process cannot be suspended to disk; pause (SIGSTOP) is the only way to freeze it';

/**
 * A process domain is an ordinary host process: it shares the host kernel,
 * file system and network with dom0 and with every other domain. This is
 * process isolation at best, not VM isolation; the backend exists to run the
 * qrexec and Admin API paths for real on any Linux host (tests, demos, CI).
 */
export const PROCESS_CAPABILITIES: VmmCapabilities = {
  name: 'process',
  isolation: 'process',
  guestImages: ['agent-process'],
  // Spawned detached (own session, unref'd) with a record in the runtime dir: the process outlives
  // close() and the daemon's own exit, and a fresh instance's open() adopts it, same pid and xid.
  domainsOnClose: 'survive',
  // No guest kernel is booted, so no virtualisation mode is started; virt_mode is accepted and ignored.
  virtModes: [],
  pause: supported,
  suspend: unsupported(NO_SUSPEND),
  stats: supported,
  blockDevices: unsupported('process domains have no block devices: they use the host file system'),
  pciDevices: unsupported('process domains cannot be given PCI devices'),
  usbDevices: unsupported('process domains cannot be given USB devices'),
  // Every domain reaches the shared vchan socket directory, as Xen guests reach each other's grants.
  vmToVmVchan: supported,
  network: unsupported(
    "process domains share the host's network stack: there is no interface to give a qube or to route through a netvm",
  ),
};
