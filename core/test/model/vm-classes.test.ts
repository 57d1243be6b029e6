import { describe, expect, it } from 'vitest';

import { AP, APP_PROPERTIES } from '../../src/model/app-properties.js';
import { App } from '../../src/model/app.js';
import { VM_CLASSES, VM_CLASS_NAMES } from '../../src/model/vm-classes.js';
import { VM_PROPS } from '../../src/model/vm-properties.js';
import { noPools } from '../support/pools.js';

// Stage 2 of every local qube class, then its stage 4: List order is (stage, name).
const QUBES_VM_STAGE2 =
  'autostart backup_timestamp debug default_user devices_denied dns gateway gateway6 icon include_in_backups installed_by_rpm ip ip6 kernel keyboard_layout klass label mac maxmem memory name provides_network qid qrexec_timeout shutdown_timeout start_time stubdom_mem stubdom_uuid stubdom_xid updateable uuid vcpus virt_mode visible_gateway visible_gateway6 visible_ip visible_ip6 visible_netmask xid';
const QUBES_VM_STAGE4 = 'audiovm bootmode default_dispvm guivm kernelopts management_dispvm netvm';

const LIST = {
  AdminVM:
    'devices_denied icon include_in_backups keyboard_layout klass label maxmem name qid updateable uuid default_dispvm',
  TemplateVM: `${QUBES_VM_STAGE2} appvm_default_bootmode ${QUBES_VM_STAGE4}`,
  AppVM: `${QUBES_VM_STAGE2.replace('updateable', 'template_for_dispvms updateable')} ${QUBES_VM_STAGE4} template`,
  StandaloneVM: `${QUBES_VM_STAGE2.replace('updateable', 'template_for_dispvms updateable')} ${QUBES_VM_STAGE4}`,
  DispVM: `auto_cleanup ${QUBES_VM_STAGE2.replace('dns', 'dispid dns').replace('kernel ', 'is_preload kernel ')} ${QUBES_VM_STAGE4} template`,
  RemoteVM: 'icon include_in_backups klass label name qid remote_name transport_rpc uuid relayvm',
};

describe('VM classes and their property tables', () => {
  it.each(VM_CLASS_NAMES)('%s lists its properties once, in (stage, name) order', (klass) => {
    const names = VM_CLASSES[klass].props.map((d) => d.name);
    expect(names.join(' ')).toBe(LIST[klass]);
    expect(new Set(names).size).toBe(names.length);
  });

  it('names every property by the key it is declared under', () => {
    for (const table of [...Object.values(VM_PROPS), AP]) {
      for (const [key, def] of Object.entries(table)) expect(def.name).toBe(key);
    }
    expect(APP_PROPERTIES.map((d) => d.name)).toEqual(Object.keys(AP));
  });

  it("gives AppVM and DispVM each its own 'template', and only them", () => {
    expect(VM_CLASSES.AppVM.template).toBe(VM_PROPS.AppVM.template);
    expect(VM_CLASSES.DispVM.template).toBe(VM_PROPS.DispVM.template);
    expect(VM_PROPS.AppVM.template.help).toBe('Template this domain is based on.');
    expect(VM_PROPS.DispVM.template.help).toBe('Disposable template this disposable is based on.');
    const withTemplate = VM_CLASS_NAMES.filter((k) => VM_CLASSES[k].template !== undefined);
    expect(withTemplate).toEqual(['AppVM', 'DispVM']);
  });

  it("keeps dom0's identity and memory fixed and read-only", () => {
    const dom0 = VM_PROPS.AdminVM;
    for (const def of [dom0.uuid, dom0.name, dom0.qid, dom0.maxmem]) expect(def.readOnly).toBe(true);
    expect(dom0.maxmem.validate).toBeUndefined();
    expect(dom0.maxmem.preSet).toBeUndefined();
    // The defaults here take no holder: a fixed value.
    expect(dom0.uuid.default?.(undefined as never)).toBe('00000000-0000-0000-0000-000000000000');
    expect(dom0.name.default?.(undefined as never)).toBe('dom0');
    expect(dom0.qid.default?.(undefined as never)).toBe(0);
    expect(dom0.maxmem.default?.(undefined as never)).toBe(4096);
    expect(dom0.keyboard_layout.default?.(undefined as never)).toBe('us++');
    expect(dom0.keyboard_layout.readOnly).toBeUndefined();
  });
});

describe('power state of the classes nothing here powers', () => {
  it("shows dom0 and a RemoteVM Running and counts them running (upstream's is_running()), whatever the cached state", () => {
    const app = new App('/nonexistent', { memoryMiB: 4096, cpus: 2 }, noPools);
    const dom0 = app.createAdminVm(app.labels.get('black'));
    const remote = app.addVm('RemoteVM', { name: 'far', label: app.labels.get('red') });
    const local = app.addVm('AppVM', { name: 'work', label: app.labels.get('red') });
    for (const vm of [dom0, remote, local]) vm.powerState = 'Halted';
    expect([dom0, remote, local].map((vm) => [vm.shownPowerState, vm.isRunning])).toEqual([
      ['Running', true],
      ['Running', true],
      ['Halted', false],
    ]);
  });
});
