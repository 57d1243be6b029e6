import type { App } from './app.js';
import type { Vm } from './vm.js';
import { QubesValueError } from './errors.js';

/** The features that name a service: `service.<name>`. */
export const SERVICE_PREFIX = 'service.';
/** Longest service name QubesDB's /qubes-service/ takes; app-dispvm. ones go by their hash instead. */
export const MAX_SERVICE_NAME = 48;
const MEMINFO_WRITER = `${SERVICE_PREFIX}meminfo-writer`;

/** Upstream's services extension refuses, before it is set, a service its QubesDB tree cannot hold. */
export function checkServiceFeature(feature: string): void {
  if (!feature.startsWith(SERVICE_PREFIX)) return;
  const service = feature.slice(SERVICE_PREFIX.length);
  if (!service) throw new QubesValueError('Service name cannot be empty');
  if (service.includes('/')) throw new QubesValueError('Service name cannot contain a slash');
  if (service === '.' || service === '..') throw new QubesValueError('Service name cannot be "." or ".."');
  if (service.length > MAX_SERVICE_NAME && !service.startsWith('app-dispvm.'))
    throw new QubesValueError(`Service name must not exceed ${MAX_SERVICE_NAME} bytes`);
}

/**
 * The same compatibility when a qubes.xml holds the feature (one migrated from Qubes 4.0):
 * upstream drops it at load, and an empty one sets maxmem to 0. True when the feature was taken.
 */
export function loadMeminfoWriter(vm: Vm, feature: string, value: string): boolean {
  if (feature !== MEMINFO_WRITER) return false;
  if (value === '' && vm.props.has('maxmem')) vm.props.init('maxmem', 0);
  return true;
}

/**
 * Upstream's Qubes 4.0 compatibility for service.meminfo-writer: setting it sets memory balancing
 * instead (maxmem back to its default when the value is true, 0 when it is empty) and the feature
 * is removed again, as /qubes-service/meminfo-writer follows maxmem alone.
 */
export function installMeminfoWriterCompat(app: App): void {
  app.events.subscribe((event) => {
    const vm = event.subject;
    if (!vm || event.name !== `domain-feature-set:${MEMINFO_WRITER}`) return;
    if (vm.props.has('maxmem')) {
      if (vm.features.get(MEMINFO_WRITER)) vm.props.reset('maxmem');
      else vm.props.set('maxmem', 0);
    }
    vm.features.remove(MEMINFO_WRITER);
  });
}
