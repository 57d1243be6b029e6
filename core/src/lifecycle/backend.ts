import type { Vmm } from '../hal/vmm.js';

/**
 * The daemon's hold on its hypervisor: either a connected Vmm, or the reason
 * there is none. Configuration calls never need it; lifecycle calls name the
 * reason when it is missing.
 */
export class Backend {
  private vmm: Vmm | null = null;
  private reason: string;

  constructor(
    readonly name: string,
    initialReason = 'not connected yet',
  ) {
    this.reason = initialReason;
  }

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
