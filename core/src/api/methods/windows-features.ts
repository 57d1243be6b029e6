import type { Vm } from '../../model/vm.js';
import type { VmStorage } from '../../storage/vm-storage.js';

/** The only values upstream's WindowsFeatures records as the qube's `os`. */
const GUEST_OS = new Set(['Windows', 'Linux']);

/**
 * What upstream gives a Windows qube only while neither it nor a template of
 * it has the feature, so a value the user chose, even false (''), is kept.
 */
const UNLESS_SET = [
  ['stubdom-qrexec', '1'],
  ['audio-model', 'ich6'],
  ['timezone', 'localtime'],
  ['no-monitor-layout', '1'],
] as const;

/** upstream's WindowsFeatures: qrexec_timeout for a Windows qube, in seconds. */
const WINDOWS_QREXEC_TIMEOUT = 6000;

/**
 * upstream's WindowsFeatures, for a qube without a template: a valid `os` is
 * recorded; `os` Windows with `qrexec` '1' in the same request (what the
 * qube's `qrexec` feature says does not matter) always sets rpc-clipboard,
 * maxmem 0 and qrexec_timeout 6000, then the defaults above. maxmem is set on
 * a running qube too: when that changes it, the property refuses, the request
 * fails and what follows here is not done, as upstream (which, building that
 * refusal wrongly, answers nothing where we answer QubesVMNotHaltedError).
 */
export function windowsFeatures(vm: Vm, requested: ReadonlyMap<string, string>): void {
  if (vm.template) return;
  const os = requested.get('os');
  if (os === undefined || !GUEST_OS.has(os)) return;
  vm.features.set('os', os);
  if (os !== 'Windows' || requested.get('qrexec') !== '1') return;
  vm.features.set('rpc-clipboard', '1');
  vm.props.set('maxmem', 0);
  vm.props.set('qrexec_timeout', WINDOWS_QREXEC_TIMEOUT);
  for (const [name, value] of UNLESS_SET)
    if (vm.featureWithTemplate(name) === undefined) vm.features.set(name, value);
}

/**
 * upstream's WindowsFeatures once a new qube's disks exist: a qube of a Windows template starts
 * from a copy of the template's private volume (Windows tools cannot yet prepare an empty one).
 * A disposable's private volume is not kept (save_on_stop false), so it gets no copy.
 */
export async function copyWindowsPrivate(storage: VmStorage, vm: Vm): Promise<void> {
  const template = vm.template;
  if (!template || template.featureWithTemplate('os') !== 'Windows') return;
  const own = storage.of(vm).get('private');
  const templates = storage.of(template).get('private');
  if (!own?.saveOnStop || !templates) return;
  await own.importVolume(templates);
}
