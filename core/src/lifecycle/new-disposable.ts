import { randomInt } from 'node:crypto';

import type { App } from '../model/app.js';
import { inheritFromDispvmTemplate } from '../model/dispvm-inherit.js';
import { DEFAULT_FIREWALL } from '../model/firewall.js';
import { initPropertyTags } from '../model/property-tags.js';
import type { Vm } from '../model/vm.js';
import type { VmStorage } from '../storage/vm-storage.js';
import type { VmFiles } from './ports.js';
import { P, VM_PROPS } from '../model/vm-properties.js';

/** What making a disposable needs: the app it joins, its disks and its per-VM files. */
export interface DisposableDeps {
  readonly app: App;
  readonly storage: VmStorage;
  readonly vmFiles: VmFiles;
}

/** An unused dispid whose name disp<id> is free too, drawn at random as upstream. */
export function freeDispid(app: App): number {
  const used = new Set(
    app.domains
      .list()
      .filter((d) => d.klass === 'DispVM')
      .map((d) => d.props.tryGet(VM_PROPS.DispVM.dispid)),
  );
  for (;;) {
    const id = randomInt(1, 10000);
    if (!used.has(id) && !app.domains.byName(`disp${id}`)) return id;
  }
}

/**
 * A new DispVM of `base` with its disks (upstream's gen_disposable up to
 * create_on_disk), shared by CreateDisposable and the preload pool. `beforeDisks`
 * runs once the qube is announced, before its disks exist: upstream marks a
 * preload there, so the qube is never seen unmarked. A qube whose disks cannot
 * be made is removed again, as upstream does.
 */
export async function newDisposable(
  deps: DisposableDeps,
  base: Vm,
  beforeDisks?: (disp: Vm) => void,
): Promise<Vm> {
  const { app } = deps;
  const dispid = freeDispid(app);
  const label = base.props.tryGet(P.label);
  const disp = app.addNewVm('DispVM', { name: `disp${dispid}`, ...(label ? { label } : {}) });
  try {
    disp.props.init('dispid', dispid);
    disp.props.initChecked('template', base);
    disp.props.init('auto_cleanup', true);
    inheritFromDispvmTemplate(disp, base);
  } catch (e) {
    // Not announced yet: upstream's constructor fails before the qube is added (a template
    // without loadable firewall rules has none to give).
    app.domains.delete(disp);
    throw e;
  }
  initPropertyTags(disp);
  app.announceNewVm(disp);
  beforeDisks?.(disp);
  try {
    await deps.storage.create(disp);
  } catch (e) {
    app.domains.delete(disp);
    throw e;
  }
  // Inherited firewall rules are kept in the qube's own file like any other.
  if (disp.firewall !== DEFAULT_FIREWALL) await deps.vmFiles.saveFirewall(disp, disp.firewall);
  app.events.fire(disp, 'domain-create-on-disk');
  return disp;
}
