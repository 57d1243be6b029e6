import type { BackendContext, Vmm } from '@odyssey/core/hal';

/**
 * A backend's Vmm factory that makes one Vmm per daemon context, so that the vchan transport
 * the backend makes from the same context reaches the same connection and domains.
 */
export function vmmPerContext<T extends Vmm>(
  make: (context: BackendContext) => T,
): (context: BackendContext) => T {
  const made = new WeakMap<BackendContext, T>();
  return (context) => {
    const vmm = made.get(context) ?? make(context);
    made.set(context, vmm);
    return vmm;
  };
}
