import type { CreateBackend } from '@odyssey/hal';
import { LxcHostTransport } from './host-transport.js';
import { LxcVmm } from './lxc-vmm.js';
import { optionsFromEnv } from './options.js';

export { INIT, domainXml, type DomainXmlInput } from './domain-xml.js';
export { LxcHostTransport, type LxcHostTransportOptions } from './host-transport.js';
export { LXC_CAPABILITIES, LxcFlavour, type LxcFlavourOptions } from './lxc-flavour.js';
export { LxcVmm, type LxcVmmOptions } from './lxc-vmm.js';
export { optionsFromEnv, type LxcEnvOptions } from './options.js';
export { GUEST_VCHAN_DIR, RuntimeFiles } from './runtime-files.js';
export { FIRST_UID, UID_RANGE } from './uid-ranges.js';

/**
 * How odysseyd loads this backend (`--backend lxc`); libvirt is chosen by ODYSSEY_LIBVIRT_URI /
 * ODYSSEY_LIBVIRT_SOCKET, the domains' root tree by ODYSSEY_LXC_ROOTFS. dom0 reaches each domain's
 * agent through the socket directory bind-mounted into that domain alone.
 */
export const createBackend: CreateBackend = (context) => {
  const vmm = new LxcVmm({ ...context, ...optionsFromEnv() });
  const vchan = new LxcHostTransport({
    nameOf: (domain) => vmm.nameOf(domain),
    vchanDir: (name) => vmm.files.vchanDir(name),
    retryIntervalMs: 1,
  });
  return { vmm, vchan };
};
