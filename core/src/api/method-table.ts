import { DEVICE_CLASSES } from '../model/devices.js';
import type { VmClassName } from '../model/vm-classes.js';
import type { MethodHandler, MethodSpec, Scope } from './method.js';
import { backup } from './methods/backup.js';
import { devices } from './methods/devices.js';
import { devicesDenied } from './methods/devices-denied.js';
import { events } from './methods/events.js';
import { feature } from './methods/feature.js';
import { firewall } from './methods/firewall.js';
import { label } from './methods/label.js';
import { lifecycle } from './methods/lifecycle.js';
import { notes } from './methods/notes.js';
import { pool } from './methods/pool.js';
import { poolVolume } from './methods/pool-volume.js';
import { volume } from './methods/volume.js';
import { globalProperty, vmProperty } from './methods/property.js';
import { tag } from './methods/tag.js';
import { vm } from './methods/vm.js';

/**
 * Every Admin API method: name, scope, R/W/X, destination and argument rules,
 * handler. Dispatch, argument checks and the generated default policy all read
 * this one table; find any method here and follow its handler in one hop.
 *
 * Columns of `m`: name, scope, 'r' | 'w' | 'x' | 'rx', dest (dom0 | vm | any),
 * arg (req | none | opt), payload (req | none | opt), handler.
 */
type Dest = 'dom0' | 'vm' | 'any';
type Want = 'req' | 'none' | 'opt';

const want = (w: Want): boolean | null => (w === 'req' ? true : w === 'none' ? false : null);

function m(
  name: string,
  scope: Scope,
  rwx: 'r' | 'w' | 'x' | 'rx',
  dest: Dest,
  arg: Want,
  payload: Want,
  handler: MethodHandler,
  extra: Partial<
    Pick<MethodSpec, 'noPolicy' | 'streaming' | 'noSave' | 'streamsPayload' | 'qrexecScript'>
  > = {},
): MethodSpec {
  return {
    name,
    scope,
    read: true,
    write: rwx === 'w',
    execute: rwx.includes('x'),
    destAdminvm: dest === 'dom0' ? true : dest === 'vm' ? false : null,
    wantsArg: want(arg),
    wantsPayload: want(payload),
    handler,
    ...extra,
  };
}

const CREATABLE: readonly VmClassName[] = ['AppVM', 'TemplateVM', 'StandaloneVM', 'DispVM', 'RemoteVM'];

export const METHODS: readonly MethodSpec[] = [
  m('admin.vmclass.List', 'global', 'r', 'dom0', 'none', 'none', vm.classList),
  m('admin.vm.List', 'global', 'r', 'any', 'none', 'none', vm.list),
  m('admin.vm.CurrentState', 'local', 'r', 'any', 'none', 'none', vm.currentState),
  // Payload optional as upstream declares it: an empty one fails the handler's own parsing, after the template check.
  ...CREATABLE.map((c) => m(`admin.vm.Create.${c}`, 'global', 'w', 'dom0', 'opt', 'opt', vm.create(c))),
  ...CREATABLE.map((c) =>
    m(`admin.vm.CreateInPool.${c}`, 'global', 'w', 'dom0', 'opt', 'opt', vm.createInPool(c)),
  ),
  m('admin.vm.Create.AdminVM', 'global', 'w', 'dom0', 'opt', 'opt', vm.refuseAdminVm(false), {
    noPolicy: true,
  }),
  m('admin.vm.CreateInPool.AdminVM', 'global', 'w', 'dom0', 'opt', 'opt', vm.refuseAdminVm(true), {
    noPolicy: true,
  }),
  m('admin.vm.CreateDisposable', 'global', 'w', 'any', 'opt', 'opt', vm.createDisposable),
  m('admin.vm.Remove', 'global', 'w', 'any', 'none', 'none', vm.remove),

  m('admin.property.List', 'global', 'r', 'dom0', 'none', 'none', globalProperty.list),
  m('admin.property.Get', 'global', 'r', 'dom0', 'req', 'none', globalProperty.get),
  m('admin.property.GetAll', 'global', 'r', 'dom0', 'none', 'none', globalProperty.getAll),
  m('admin.property.GetDefault', 'global', 'r', 'dom0', 'req', 'none', globalProperty.getDefault),
  m('admin.property.Help', 'global', 'r', 'dom0', 'req', 'none', globalProperty.help),
  m('admin.property.Set', 'global', 'w', 'dom0', 'req', 'opt', globalProperty.set),
  m('admin.property.Reset', 'global', 'w', 'dom0', 'req', 'none', globalProperty.reset),

  m('admin.vm.property.List', 'local', 'r', 'any', 'none', 'none', vmProperty.list),
  m('admin.vm.property.Get', 'local', 'r', 'any', 'req', 'none', vmProperty.get),
  m('admin.vm.property.GetAll', 'local', 'r', 'any', 'none', 'none', vmProperty.getAll),
  m('admin.vm.property.GetDefault', 'local', 'r', 'any', 'req', 'none', vmProperty.getDefault),
  m('admin.vm.property.Help', 'local', 'r', 'any', 'req', 'none', vmProperty.help),
  m('admin.vm.property.Set', 'local', 'w', 'any', 'req', 'opt', vmProperty.set),
  m('admin.vm.property.Reset', 'local', 'w', 'any', 'req', 'none', vmProperty.reset),

  m('admin.vm.feature.List', 'local', 'r', 'any', 'none', 'none', feature.list),
  m('admin.vm.feature.Get', 'local', 'r', 'any', 'req', 'none', feature.get),
  m('admin.vm.feature.CheckWithTemplate', 'local', 'r', 'any', 'req', 'none', feature.checkWithTemplate),
  m('admin.vm.feature.CheckWithNetvm', 'local', 'r', 'any', 'req', 'none', feature.checkWithNetvm),
  m('admin.vm.feature.CheckWithAdminVM', 'local', 'r', 'any', 'req', 'none', feature.checkWithAdminVm),
  m(
    'admin.vm.feature.CheckWithTemplateAndAdminVM',
    'local',
    'r',
    'any',
    'req',
    'none',
    feature.checkWithTemplateAndAdminVm,
  ),
  m('admin.vm.feature.Set', 'local', 'w', 'any', 'req', 'opt', feature.set),
  m('admin.vm.feature.Remove', 'local', 'w', 'any', 'req', 'none', feature.remove),

  m('admin.vm.tag.List', 'local', 'r', 'any', 'none', 'none', tag.list),
  m('admin.vm.tag.Get', 'local', 'r', 'any', 'req', 'none', tag.get),
  m('admin.vm.tag.Set', 'local', 'w', 'any', 'req', 'none', tag.set),
  m('admin.vm.tag.Remove', 'local', 'w', 'any', 'req', 'none', tag.remove),

  m('admin.label.List', 'global', 'r', 'dom0', 'none', 'none', label.list),
  m('admin.label.Get', 'global', 'r', 'dom0', 'req', 'none', label.get),
  m('admin.label.Index', 'global', 'r', 'dom0', 'req', 'none', label.index),
  m('admin.label.Create', 'global', 'w', 'dom0', 'req', 'req', label.create),
  m('admin.label.Remove', 'global', 'w', 'dom0', 'req', 'none', label.remove),

  m('admin.vm.firewall.Get', 'local', 'r', 'vm', 'none', 'none', firewall.get),
  m('admin.vm.firewall.Set', 'local', 'w', 'vm', 'none', 'req', firewall.set, { noSave: true }),
  m('admin.vm.firewall.Reload', 'local', 'x', 'vm', 'none', 'none', firewall.reload),

  m('admin.vm.notes.Get', 'local', 'r', 'vm', 'none', 'none', notes.get),
  m('admin.vm.notes.Set', 'local', 'w', 'vm', 'none', 'req', notes.set, { noSave: true }),

  m('admin.vm.device.denied.List', 'local', 'r', 'any', 'none', 'none', devicesDenied.list),
  m('admin.vm.device.denied.Add', 'local', 'w', 'any', 'none', 'opt', devicesDenied.add),
  m('admin.vm.device.denied.Remove', 'local', 'w', 'any', 'none', 'opt', devicesDenied.remove),

  m('admin.deviceclass.List', 'global', 'r', 'dom0', 'none', 'none', devices.classList),
  ...DEVICE_CLASSES.flatMap((c) => [
    m(`admin.vm.device.${c}.Available`, 'local', 'r', 'any', 'opt', 'none', devices[c].available),
    m(`admin.vm.device.${c}.Assigned`, 'local', 'r', 'any', 'opt', 'none', devices[c].assigned),
    m(`admin.vm.device.${c}.Attached`, 'local', 'r', 'any', 'opt', 'none', devices[c].attached),
    m(`admin.vm.device.${c}.Assign`, 'local', 'w', 'any', 'req', 'req', devices[c].assign),
    m(`admin.vm.device.${c}.Unassign`, 'local', 'w', 'any', 'req', 'none', devices[c].unassign),
    m(`admin.vm.device.${c}.Attach`, 'local', 'x', 'any', 'req', 'opt', devices[c].attach),
    m(`admin.vm.device.${c}.Detach`, 'local', 'x', 'any', 'req', 'none', devices[c].detach),
    m(`admin.vm.device.${c}.Set.assignment`, 'local', 'w', 'any', 'req', 'req', devices[c].setAssignment),
  ]),

  m('admin.pool.List', 'global', 'r', 'dom0', 'none', 'none', pool.list),
  m('admin.pool.ListDrivers', 'global', 'r', 'dom0', 'none', 'none', pool.listDrivers),
  m('admin.pool.Info', 'global', 'r', 'dom0', 'req', 'none', pool.info),
  m('admin.pool.UsageDetails', 'global', 'r', 'dom0', 'req', 'none', pool.usageDetails),
  m('admin.pool.Add', 'global', 'w', 'dom0', 'req', 'req', pool.add),
  m('admin.pool.Remove', 'global', 'w', 'dom0', 'req', 'none', pool.remove),
  m('admin.pool.Set.revisions_to_keep', 'global', 'w', 'dom0', 'req', 'req', pool.setRevisionsToKeep),
  m('admin.pool.Set.ephemeral_volatile', 'global', 'w', 'dom0', 'req', 'req', pool.setEphemeralVolatile),
  m('admin.pool.volume.List', 'global', 'r', 'dom0', 'req', 'none', pool.volumeList),
  // The 2017 draft's pool-addressed volume calls; not in upstream's generated policy.
  ...[
    m('admin.pool.volume.Info', 'global', 'r', 'dom0', 'req', 'req', poolVolume.info),
    m('admin.pool.volume.ListSnapshots', 'global', 'r', 'dom0', 'req', 'req', poolVolume.listSnapshots),
    m(
      'admin.pool.volume.Set.revisions_to_keep',
      'global',
      'w',
      'dom0',
      'req',
      'req',
      poolVolume.setRevisionsToKeep,
    ),
    m('admin.pool.volume.Revert', 'global', 'w', 'dom0', 'req', 'req', poolVolume.revert),
    m('admin.pool.volume.Resize', 'global', 'w', 'dom0', 'req', 'req', poolVolume.resize),
    m('admin.pool.volume.CloneFrom', 'global', 'w', 'dom0', 'req', 'req', poolVolume.cloneFrom),
    m('admin.pool.volume.CloneTo', 'global', 'w', 'dom0', 'req', 'req', poolVolume.cloneTo),
    m('admin.pool.volume.Import', 'global', 'w', 'dom0', 'req', 'opt', poolVolume.import, {
      streamsPayload: true,
    }),
  ].map((spec) => ({ ...spec, noPolicy: true })),

  m('admin.vm.volume.List', 'local', 'r', 'any', 'none', 'none', volume.list),
  m('admin.vm.volume.Info', 'local', 'r', 'any', 'req', 'none', volume.info),
  m('admin.vm.volume.ListSnapshots', 'local', 'r', 'any', 'req', 'none', volume.listSnapshots),
  m('admin.vm.volume.Revert', 'local', 'w', 'any', 'req', 'req', volume.revert),
  m('admin.vm.volume.CloneFrom', 'local', 'w', 'any', 'req', 'none', volume.cloneFrom),
  m('admin.vm.volume.CloneTo', 'local', 'w', 'any', 'req', 'req', volume.cloneTo),
  m('admin.vm.volume.Resize', 'local', 'w', 'any', 'req', 'req', volume.resize),
  m('admin.vm.volume.Clear', 'local', 'w', 'any', 'req', 'none', volume.clear),
  m('admin.vm.volume.Set.revisions_to_keep', 'local', 'w', 'any', 'req', 'req', volume.setRevisionsToKeep),
  m('admin.vm.volume.Set.rw', 'local', 'w', 'any', 'req', 'req', volume.setRw),
  m('admin.vm.volume.Set.ephemeral', 'local', 'w', 'any', 'req', 'req', volume.setEphemeral),
  m('admin.vm.volume.Import', 'local', 'w', 'any', 'req', 'opt', volume.import(false), {
    streamsPayload: true,
  }),
  m('admin.vm.volume.ImportWithSize', 'local', 'w', 'any', 'req', 'opt', volume.import(true), {
    streamsPayload: true,
  }),

  m('admin.vm.Start', 'local', 'x', 'any', 'none', 'none', lifecycle.start),
  m('admin.vm.Shutdown', 'local', 'x', 'any', 'opt', 'none', lifecycle.shutdown),
  m('admin.vm.Pause', 'local', 'x', 'any', 'none', 'none', lifecycle.pause),
  m('admin.vm.Unpause', 'local', 'x', 'any', 'none', 'none', lifecycle.unpause),
  m('admin.vm.Suspend', 'local', 'x', 'any', 'none', 'none', lifecycle.suspend),
  m('admin.vm.Resume', 'local', 'x', 'any', 'none', 'none', lifecycle.resume),
  m('admin.vm.Kill', 'local', 'x', 'any', 'none', 'none', lifecycle.kill),
  m('admin.vm.Console', 'local', 'w', 'any', 'none', 'none', lifecycle.console, {
    qrexecScript: true,
    noSave: true,
  }),

  m('admin.Events', 'global', 'r', 'any', 'none', 'none', events.events, { streaming: true }),
  m('admin.vm.Stats', 'global', 'r', 'any', 'none', 'none', events.stats, { streaming: true }),

  m('admin.backup.Execute', 'global', 'rx', 'dom0', 'req', 'none', backup.execute),
  m('admin.backup.Cancel', 'global', 'x', 'dom0', 'req', 'none', backup.cancel),
  m('admin.backup.Info', 'local', 'r', 'dom0', 'req', 'none', backup.info),
];
