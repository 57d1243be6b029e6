import type { BackendContext, VchanTransport, VmmFactory } from '@odyssey/core/hal';
import { vmmPerContext } from '@odyssey/libvirt-hal';
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

const xenVmm = vmmPerContext((context) => new XenVmm({ ...context, ...optionsFromEnv() }));

/** How odysseyd loads this backend (`--backend xen`); libvirt is chosen by ODYSSEY_LIBVIRT_URI / ODYSSEY_LIBVIRT_SOCKET. */
export const createVmm: VmmFactory = xenVmm;

/** dom0's end of the guests' vchans: libxenvchan, with domains named by name resolved to domids through libvirt. */
export function createVchanTransport(context: BackendContext): VchanTransport {
  const vmm = xenVmm(context);
  return new XenVchanTransport({ resolveDomid: (domain) => vmm.domid(domain) });
}
