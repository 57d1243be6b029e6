/**
 * What a backend can do. The conformance suite reports a check as
 * "unsupported" (with `reason`) instead of failing when the backend declares it
 * cannot do the thing, so declare honestly.
 */
export interface Unsupported {
  readonly supported: false;
  readonly reason: string;
}
export interface Supported {
  readonly supported: true;
}
export type Capability = Supported | Unsupported;

export interface VmmCapabilities {
  /** Backend name as shown in reports, e.g. "kvm". */
  readonly name: string;
  /** Virtualisation modes this backend can start. */
  readonly virtModes: readonly ('pv' | 'pvh' | 'hvm')[];
  readonly pause: Capability;
  readonly suspend: Capability;
  readonly stats: Capability;
  readonly blockDevices: Capability;
  readonly pciDevices: Capability;
  readonly usbDevices: Capability;
  /** Whether guests of different domains can reach each other over vchan directly. */
  readonly vmToVmVchan: Capability;
  /** Serial console ptys (Vmm.consolePath); absent means unsupported. */
  readonly console?: Capability;
}

export const supported: Supported = { supported: true };
export function unsupported(reason: string): Unsupported {
  return { supported: false, reason };
}
