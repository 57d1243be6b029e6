import type { CreateBackend } from '@odyssey/hal';
import { KvmHostTransport } from '@odyssey/vchan';
import { optionsFromEnv } from './options.js';
import { VirtualBoxVmm } from './virtualbox-vmm.js';

export { VCHAN_SERIAL_PORT, domainXml, type DomainXmlInput } from './domain-xml.js';
export { optionsFromEnv } from './options.js';
export { PipeMeeting } from './pipe-meeting.js';
export { RuntimeFiles } from './runtime-files.js';
export { GUEST_SERIAL_DEVICE, openSerialGuestTransport } from './serial-guest.js';
export {
  VIRTUALBOX_CAPABILITIES,
  VirtualBoxFlavour,
  type VirtualBoxFlavourOptions,
} from './virtualbox-flavour.js';
export { VirtualBoxVmm, type VirtualBoxVmmOptions } from './virtualbox-vmm.js';

/**
 * How odysseyd loads this backend (`--backend virtualbox`); libvirt is chosen by
 * ODYSSEY_LIBVIRT_URI / ODYSSEY_LIBVIRT_SOCKET. dom0's end of a guest's vchans is its serial
 * port's host pipe, carrying the KVM transport's multiplexed framing (@odyssey/vchan's kvm): the
 * same host transport, dialling the pipe where KVM dials QEMU's virtio-serial socket.
 */
export const createBackend: CreateBackend = (context) => {
  const vmm = new VirtualBoxVmm({ ...context, ...optionsFromEnv() });
  const vchan = new KvmHostTransport({ channelSocket: (domain) => vmm.vchanSocket(domain) });
  return { vmm, vchan };
};
