import { unsupported } from '@odyssey/hal';
import type { LibvirtFlavour } from '../src/index.js';

/** A flavour for LibvirtVmm over a scripted libvirtd: it declares nothing and builds no domain XML. */
export function fakeFlavour(extra: Partial<LibvirtFlavour> = {}): LibvirtFlavour {
  return {
    capabilities: () => ({
      name: 'fake',
      isolation: 'hosted-vm',
      guestImages: [],
      domainsOnClose: 'survive',
      virtModes: ['hvm'],
      pause: unsupported('fake'),
      suspend: unsupported('fake'),
      stats: unsupported('fake'),
      blockDevices: unsupported('fake'),
      pciDevices: unsupported('fake'),
      usbDevices: unsupported('fake'),
      vmToVmVchan: unsupported('fake'),
    }),
    nameProblem: () => undefined,
    domainXml: () => Promise.reject(new Error('not used')),
    flags: { shutdown: 0, undefine: 0, forceBoot: false },
    ...extra,
  };
}
