import { QubesValueError } from './errors.js';
import { featureTrue } from './features.js';
import { AP } from './app-properties.js';
import type { Vm } from './vm.js';

/** The services a preloaded disposable is waited for with; its template's tools must announce them. */
const PRELOAD_SERVICES = ['qubes.WaitForRunningSystem', 'qubes.WaitForSession'];

/** Qube classes that can be disposable templates (upstream's DVMTemplateMixin). */
const DVM_TEMPLATE_CLASSES = new Set(['AppVM', 'StandaloneVM', 'DispVM']);

/** The preload services VM's template chain does not announce. */
export function missingPreloadServices(vm: Vm): string[] {
  return PRELOAD_SERVICES.filter((s) => !featureTrue(vm.featureWithTemplate(`supported-rpc.${s}`)));
}

/** Python's float() over a feature value: decimal, exponent, inf and nan, with surrounding blanks. */
function isPythonFloat(value: string): boolean {
  const digits = '\\d(?:_?\\d)*';
  const number = `(?:${digits}(?:\\.(?:${digits})?)?|\\.${digits})(?:[eE][+-]?${digits})?`;
  return new RegExp(`^\\s*[+-]?(?:${number}|inf|infinity|nan)\\s*$`, 'i').test(value);
}

function checkPreloadMax(vm: Vm, value: string): void {
  if (!featureTrue(vm.featureWithTemplate('qrexec')))
    throw new QubesValueError('Qube does not support qrexec');
  const missing = missingPreloadServices(vm);
  if (missing.length > 0)
    throw new QubesValueError(`Qube does not support the RPC(s) '${missing.join(', ')}'`);
  if (!/^[0-9]+$/.test(value || '0')) {
    throw new QubesValueError('Invalid preload-dispvm-max value: not a digit');
  }
}

/**
 * Upstream's domain-feature-pre-set checks of the disposable-preload features: a disposable
 * template validates its own preload-dispvm-max and -delay; dom0's (the global preload) is
 * validated by the default disposable template, and only when it changes.
 */
export function checkPreloadFeature(vm: Vm, name: string, value: string): void {
  const old = vm.features.get(name);
  if (name === 'preload-dispvm-max') {
    if (vm.klass === 'AdminVM') {
      const target = vm.app.props.tryGet(AP.default_dispvm);
      if (value !== old && target) checkPreloadMax(target, value);
    } else if (DVM_TEMPLATE_CLASSES.has(vm.klass)) {
      checkPreloadMax(vm, value);
    }
  } else if (name === 'preload-dispvm-delay' && DVM_TEMPLATE_CLASSES.has(vm.klass) && value !== old) {
    if (!isPythonFloat(value || '0')) {
      throw new QubesValueError('Invalid preload-dispvm-delay value: not an integer or float');
    }
  }
}
