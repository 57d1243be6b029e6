import type { Vmm } from '@odyssey/hal';

/**
 * The daemon's hold on its hypervisor: either a connected Vmm, or the reason
 * there is none. Configuration calls never need it; lifecycle calls name the
 * reason when it is missing.
 */
export class Backend {
  private vmm: Vmm | null = null;
  private reason = 'not connected yet';

  constructor(readonly name: string) {}

  connected(vmm: Vmm): void {
    this.vmm = vmm;
  }

  unavailable(reason: string): void {
    this.vmm = null;
    this.reason = reason;
  }

  get current(): Vmm | null {
    return this.vmm;
  }

  get unavailableReason(): string {
    return this.reason;
  }
}
