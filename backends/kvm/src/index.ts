import type { CreateBackend } from '@odyssey/hal';
import { KvmHostTransport } from '@odyssey/vchan';

import { KvmVmm } from './kvm-vmm.js';
import { optionsFromEnv } from './options.js';

export {
  bootProbe,
  probeAccel,
  type AccelProbeOptions,
  type AccelVerdict,
  type BootProbeResult,
} from './accel-probe.js';
export { domainXml, type DomainType, type DomainXmlInput } from './domain-xml.js';
export { KvmFlavour, type KvmFlavourOptions } from './kvm-flavour.js';
export { KvmVmm, type KvmVmmOptions } from './kvm-vmm.js';
export { optionsFromEnv, type KvmEnvOptions } from './options.js';
export { RuntimeFiles, VCHAN_PORT_NAME } from './runtime-files.js';

/**
 * How odysseyd loads this backend (`--backend kvm`); libvirt is chosen by ODYSSEY_LIBVIRT_URI /
 * ODYSSEY_LIBVIRT_SOCKET. dom0's end of the guests' vchans is each guest's virtio-serial channel,
 * multiplexed (see @odyssey/vchan's kvm). Guests have no path to each other, so dom0 relays their
 * vchans; the target's channel is up while odysseyd's qrexec daemon holds its control vchan.
 */
export const createBackend: CreateBackend = (context) => {
  const vmm = new KvmVmm({ ...context, ...optionsFromEnv() });
  const vchan = new KvmHostTransport({ channelSocket: (domain) => vmm.vchanSocket(domain), relay: true });
  return { vmm, vchan };
};
