import { unsupported } from '@odyssey/hal';
import { Proc, type Domain, type XdrWriter } from '@odyssey/libvirt';
import type { Packet } from '../../libvirt/src/packet.js';
import { xdr, type FakePeer } from '../../libvirt/test/fake-daemon.js';
import type { LibvirtFlavour } from '../src/index.js';

/** A domain as remote_nonnull_domain: name, UUID bytes, id. */
export function writeDomain(w: XdrWriter, d: Domain): void {
  w.string(d.name).fixedOpaque(Buffer.from(d.uuid.replace(/-/g, ''), 'hex'), 16);
  w.int(d.id);
}

/**
 * Answers what LibvirtVmm.open() asks before anything else (auth, feature checks, the event
 * callback, whose id is `callback`); false for any other call.
 */
export function answerConnect(peer: FakePeer, call: Packet, callback: number): boolean {
  switch (call.header.procedure) {
    case Proc.AUTH_LIST:
      peer.answer(
        call,
        xdr((w) => w.uint(0)),
      );
      return true;
    case Proc.CONNECT_SUPPORTS_FEATURE:
      peer.answer(
        call,
        xdr((w) => w.int(1)),
      );
      return true;
    case Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY:
      peer.answer(
        call,
        xdr((w) => w.int(callback)),
      );
      return true;
    default:
      return false;
  }
}

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
