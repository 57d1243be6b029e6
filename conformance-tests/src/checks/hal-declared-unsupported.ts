import { stat } from 'node:fs/promises';

import { VmmError, type CapabilityName, type Vmm } from '@odyssey/hal';

import { fail } from '../check.js';
import { HAL_DOMAIN } from './hal-context.js';

/**
 * How a capability declared unsupported is tried on the running HAL_DOMAIN: `worked` when the call
 * did what the capability promises (and has been undone), false when it was refused. A capability
 * the HAL gives no call of its own, or whose call needs more than one running domain, is `untried`
 * with the reason, which the report repeats so nobody reads "no warning" as "checked".
 */
type Attempt = { readonly tried: (vmm: Vmm) => Promise<boolean> } | { readonly untried: string };

/**
 * pause() and suspend() have an undo, and the HAL says how to refuse them: a VmmError with code
 * 'unsupported'; anything else is a failure, since core tells the user from that code.
 */
function lifecycle(op: 'pause' | 'suspend', undo: 'unpause' | 'resume'): Attempt {
  return {
    tried: async (vmm) => {
      try {
        await vmm[op](HAL_DOMAIN);
      } catch (e) {
        if (e instanceof VmmError && e.code === 'unsupported') return false;
        fail(
          `${op}() is declared unsupported, so it must reject with VmmError code 'unsupported'; got ${String(e)}`,
        );
      }
      // Undone, so the checks after this one find the domain running.
      await vmm[undo](HAL_DOMAIN);
      return true;
    },
  };
}

const NO_METHOD = 'the HAL has no Vmm method for it';

export const DECLARED_UNSUPPORTED_ATTEMPTS: Readonly<Record<CapabilityName, Attempt>> = {
  pause: lifecycle('pause', 'unpause'),
  suspend: lifecycle('suspend', 'resume'),
  // stats() has a value without the capability (core lists memory from it); what the capability
  // adds, and what hal.stats measures, is the running domain's CPU time.
  stats: {
    tried: async (vmm) => {
      const listed = await vmm.stats().catch(() => []);
      return listed.some((s) => s.name === HAL_DOMAIN && s.cpuTimeNs > 0);
    },
  },
  console: {
    tried: async (vmm) => {
      if (!vmm.consolePath) return false;
      const path = await vmm.consolePath(HAL_DOMAIN).catch(() => undefined);
      return path !== undefined && (await stat(path).catch(() => undefined))?.isCharacterDevice() === true;
    },
  },
  network: { untried: 'attachLink() needs a second running domain as the netvm' },
  vmToVmVchan: { untried: 'a vchan between two guests needs a second running domain' },
  blockDevices: { untried: NO_METHOD },
  pciDevices: { untried: NO_METHOD },
  usbDevices: { untried: NO_METHOD },
};
