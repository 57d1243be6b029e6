import type { BackendContext, VchanTransport, Vmm, VmmFactory } from '@odyssey/core/hal';
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
export { KvmVmm, type KvmVmmOptions } from './kvm-vmm.js';
export { optionsFromEnv, type KvmEnvOptions } from './options.js';
export { RuntimeFiles, VCHAN_PORT_NAME } from './runtime-files.js';

/** The Vmm made for a daemon's context, so that its vchan transport finds the same guests' channels. */
const vmms = new WeakMap<BackendContext, KvmVmm>();

/** How odysseyd loads this backend (`--backend kvm`); libvirt is chosen by ODYSSEY_LIBVIRT_URI / ODYSSEY_LIBVIRT_SOCKET. */
export const createVmm: VmmFactory = (context: BackendContext): Vmm => {
  const vmm = new KvmVmm({ ...context, ...optionsFromEnv() });
  vmms.set(context, vmm);
  return vmm;
};

/** dom0's end of the guests' vchans: each guest's virtio-serial channel, multiplexed (see @odyssey/vchan's kvm). */
export function createVchanTransport(context: BackendContext): VchanTransport {
  const vmm = vmms.get(context) ?? (createVmm(context) as KvmVmm);
  return new KvmHostTransport({ channelSocket: (domain) => vmm.vchanSocket(domain) });
}
