import type { CreateBackend } from '@odyssey/hal';
import { XenVchanTransport } from '@odyssey/vchan';

import { optionsFromEnv } from './options.js';
import { XenVmm } from './xen-vmm.js';

export { domainXml, type XenDomainXmlInput } from './domain-xml.js';
export {
  DEBIAN_HOST_PATHS,
  findHvmSupport,
  hypervisorGuests,
  virtModeSupport,
  type HvmBoot,
  type HvmSupport,
  type HypervisorGuests,
  type XenHostPaths,
} from './host-support.js';
export { optionsFromEnv } from './options.js';
export { XenFlavour, type XenFlavourOptions } from './xen-flavour.js';
export { XenVmm, type XenVmmOptions } from './xen-vmm.js';

/**
 * How odysseyd loads this backend (`--backend xen`); libvirt is chosen by ODYSSEY_LIBVIRT_URI /
 * ODYSSEY_LIBVIRT_SOCKET. dom0's end of the guests' vchans is libxenvchan, with domains named by
 * name resolved to domids through the same libvirt connection.
 */
export const createBackend: CreateBackend = (context) => {
  const vmm = new XenVmm({ ...context, ...optionsFromEnv() });
  return { vmm, vchan: new XenVchanTransport({ resolveDomid: (domain) => vmm.domid(domain) }) };
};
