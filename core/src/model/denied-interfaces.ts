import { QubesPropertyValueError, QubesValueError, pyRepr } from './errors.js';

/**
 * Device interface codes as `devices_denied` and admin.vm.device.denied.* use
 * them: 7 characters each, written back to back (upstream's DeviceInterface
 * without a device class keeps the 7 characters as they are).
 */
export function splitInterfaces(interfaces: string): string[] {
  if (interfaces.length % 7 !== 0) {
    throw new QubesValueError(
      `Invalid length of interfaces=${pyRepr(interfaces)} (is ${interfaces.length}, expected multiple of 7)`,
    );
  }
  return interfaces.match(/.{7}/gs) ?? [];
}

/** The devices_denied setter: duplicates dropped, codes sorted, then each checked against the strict form. */
export function normaliseDeniedList(value: string): string {
  if (value === '') return '';
  const joined = [...new Set(splitInterfaces(value))].sort().join('');
  if (!/^([bump*][0-9a-f*]{6})*$/.test(joined)) {
    throw new QubesPropertyValueError(
      'Interface code list should be in the form chhhhhhchhhhhh...,where c is one of "b", "u", "m", "p", "*" and h is a hexdigit or "*".',
    );
  }
  return joined;
}
