import type { App } from './app.js';
import type { Vm } from './vm.js';

/**
 * The `servicevm` feature upstream's core-features extension keeps on every
 * qube that provides network ("1" while provides_network is true, absent
 * otherwise); the icon is computed from it, so its change is announced too.
 */
function syncServiceVmFeature(vm: Vm): void {
  if (vm.bool('provides_network')) vm.features.set('servicevm', '1');
  else if (vm.features.has('servicevm')) vm.features.remove('servicevm');
  else return;
  vm.events.fire(vm, 'property-reset:icon', { name: 'icon' });
}

export function installServiceVmFeature(app: App): void {
  app.events.subscribe((e) => {
    if (e.subject && /^property-(set|reset):provides_network$/.test(e.name)) syncServiceVmFeature(e.subject);
  });
}
