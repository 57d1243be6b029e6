import { QubesValueError } from './errors.js';
import type { Vm } from './vm.js';

const PREFIX = 'vm-config.';
/** QubesDB keys hold 63 bytes and `/vm-config/` takes 11 of them. */
const MAX_CONFIG_NAME = 52;

/**
 * Upstream's vm_config extension refuses a vm-config.* feature of a local qube whose name cannot
 * be a file under /vm-config/ in the guest. It refuses only once the value is stored (which then
 * stays until the next save); here nothing is stored. The messages are upstream's, the first one's
 * number included.
 */
export function checkVmConfigFeature(vm: Vm, feature: string): void {
  if (vm.klass === 'RemoteVM' || !feature.startsWith(PREFIX)) return;
  const config = feature.slice(PREFIX.length);
  if (config.length > MAX_CONFIG_NAME) throw new QubesValueError('VM config name must not exceed 46 bytes');
  if (config === '') throw new QubesValueError('Empty config name not allowed');
  if (!/^[A-Za-z]/.test(config)) throw new QubesValueError('Config name must start with an ASCII letter');
}
