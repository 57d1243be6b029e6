import type { App } from '../model/app.js';
import { QubesVMError, QubesVMInUseError } from '../model/errors.js';
import type { EventOf } from '../model/events.js';
import type { Vm } from '../model/vm.js';

/** The running qubes whose `prop` (guivm, audiovm) is `vm`. */
function runningUsers(app: App, vm: Vm, prop: 'guivm' | 'audiovm'): Vm[] {
  return app.domains.sorted().filter((d) => d.isRunning && d.props.has(prop) && d.props.tryGet(prop) === vm);
}

const names = (vms: readonly Vm[]): string => vms.map((v) => v.name).join(', ');

/**
 * Upstream's gui and audio extensions refuse a shutdown (unless forced) of a qube that running
 * qubes use as their GUI or audio domain. Registered after the netvm's own check, which
 * upstream's class handler runs first; the two differ in their exception and in that a
 * preloaded disposable keeps only an audio domain free to go.
 */
export function installGuiAudioInUse(app: App): void {
  app.events.onPre('domain-pre-shutdown', (e: EventOf<'domain-pre-shutdown'>) => {
    const vm = e.subject;
    if (!vm || e.args.force === 'True') return;
    const guiUsers = runningUsers(app, vm, 'guivm');
    if (guiUsers.length > 0)
      throw new QubesVMError(`There are running VMs using this VM as GuiVM: ${names(guiUsers)}`);
    const audioUsers = runningUsers(app, vm, 'audiovm').filter((d) => d !== vm && !d.bool('is_preload'));
    if (audioUsers.length > 0)
      throw new QubesVMInUseError(`There are running VMs using this VM as AudioVM: ${names(audioUsers)}`);
  });
}
