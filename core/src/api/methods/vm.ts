import {
  PermissionDenied,
  ProtocolError,
  QubesException,
  QubesLabelNotFoundError,
  QubesPropertyValueError,
  QubesValueError,
  QubesVMAlreadyExistsError,
  QubesVMInUseError,
  QubesVMNotFoundError,
  QubesVMNotHaltedError,
  pyRepr,
} from '../../model/errors.js';
import type { Label } from '../../model/labels.js';
import { validateLabelName } from '../../model/labels.js';
import { inheritFromDispvmTemplate } from '../../model/dispvm-inherit.js';
import { missingPreloadServices } from '../../model/preload-features.js';
import { DEFAULT_FIREWALL } from '../../model/firewall.js';
import { initPropertyTags } from '../../model/property-tags.js';
import type { Vm } from '../../model/vm.js';
import { VM_CLASS_NAMES, VM_CLASSES } from '../../model/vm-classes.js';
import type { VmClassName } from '../../model/vm-classes.js';
import { isAscii, validateName } from '../../model/validate.js';
import type { CallContext } from '../call-context.js';
import { requireReferable } from '../references.js';
import { getAllBody } from './property.js';
import { copyWindowsPrivate } from './windows-features.js';
import { freeDispid, newDisposable } from '../../lifecycle/new-disposable.js';
import { P } from '../../model/vm-properties.js';
import { AP } from '../../model/app-properties.js';

function listLine(vm: Vm): string {
  return `${vm.name} class=${vm.klass} state=${vm.shownPowerState} uuid=${vm.uuid}\n`;
}

interface CreateOptions {
  name: string;
  label: Label;
  pool?: string;
  pools: Map<string, string>;
  /** Some `label=` named no label (another one may have). */
  unknownLabel: boolean;
  /** The last `pool=` or `pool:<volume>=` that named no pool. */
  unknownPool?: string;
}

const POOL_VOLUMES = ['root', 'private', 'volatile', 'kernel'];

/**
 * Parses the Create payload the way upstream's _vm_create does, in the same order of checks.
 * Upstream collects the new qube's keyword arguments as it goes: a key is "not unique" only
 * once a value of it was taken (the template from the argument counts, an unknown label or pool
 * does not), and `pool`/`pool:<volume>` are checked against the pools found so far.
 */
function parseCreatePayload(ctx: CallContext, allowPool: boolean): CreateOptions {
  if (!isAscii(ctx.payload)) throw new ProtocolError('Parameters contains non-ASCII characters');
  const taken = new Set<string>();
  if (ctx.arg !== '' && ctx.app.domains.byName(ctx.arg)) taken.add('template');
  let name: string | undefined;
  let label: Label | undefined;
  let pool: string | undefined;
  const pools = new Map<string, string>();
  let unknownLabel = false;
  let unknownPool: string | undefined;
  for (const param of ctx.payload.toString('ascii').split(' ')) {
    const eq = param.indexOf('=');
    // Upstream fails to split it (a ValueError, no reply); ours names it quoted, as a NUL in it
    // would end the reply's message field.
    if (eq === -1) throw new ProtocolError(`Invalid parameter: ${pyRepr(param)}`);
    const key = param.slice(0, eq);
    const value = param.slice(eq + 1);
    if (taken.has(key)) throw new ProtocolError('Options must be unique');
    if (key === 'name') {
      validateName(value);
      name = value;
      taken.add(key);
    } else if (key === 'label') {
      validateLabelName(value, true);
      // get_label: a name or an index, not the `label-<n>` form the property setter takes.
      const found = ctx.app.labels.find(value);
      if (found) {
        label = found;
        taken.add(key);
      } else {
        unknownLabel = true;
      }
    } else if (key === 'pool' && allowPool) {
      if (pool !== undefined) throw new ProtocolError("Option 'pool' must be unique");
      if (ctx.app.pools.has(value)) pool = value;
      else unknownPool = value;
    } else if (key.startsWith('pool:') && allowPool) {
      const volume = key.slice('pool:'.length);
      if (!POOL_VOLUMES.includes(volume)) {
        throw new ProtocolError(`Volume must be one of: ${POOL_VOLUMES.join(', ')}`);
      }
      if (pools.has(volume)) throw new ProtocolError(`Option 'pool:${volume}' must be unique`);
      if (ctx.app.pools.has(value)) pools.set(volume, value);
      else unknownPool = value;
    } else {
      if (!allowPool && (key === 'pool' || key.startsWith('pool:'))) {
        throw new ProtocolError("Pool option specified but 'allow_pool' is False");
      }
      throw new ProtocolError('Options does not match: name, label, pool, pool:');
    }
  }
  if (name === undefined) throw new ProtocolError('Creation requested without key: name');
  if (label === undefined) throw new ProtocolError('Creation requested without key: label');
  if (pool !== undefined && pools.size > 0) {
    throw new ProtocolError("Conflicting options specified: 'pool=', 'pool:volume='");
  }
  return {
    name,
    label,
    ...(pool !== undefined ? { pool } : {}),
    pools,
    unknownLabel,
    ...(unknownPool !== undefined ? { unknownPool } : {}),
  };
}

/** The template named by the argument, else the default one; upstream's add_new_vm and DispVM constructor checks. */
function templateFor(ctx: CallContext, klass: VmClassName): Vm | null {
  if (!VM_CLASSES[klass].template) return null;
  let template: Vm | null;
  if (ctx.arg !== '') {
    template = ctx.app.domains.get(ctx.arg);
    requireReferable(ctx, template, 'template');
  } else {
    template = ctx.app.props.tryGet(klass === 'DispVM' ? AP.default_dispvm : AP.default_template) ?? null;
    if (!template)
      throw new QubesValueError('Template for the qube not specified, nor default template set.');
  }
  if (klass === 'DispVM' && !template.bool('template_for_dispvms')) {
    throw new QubesValueError(
      `template for disposable (${template.name}) needs to be an AppVM with template_for_dispvms=True`,
    );
  }
  return template;
}

/**
 * Upstream's _vm_create checks, in its order: payload, existing name, unknown template, unknown
 * label, unknown pool.
 */
function checkCreate(ctx: CallContext, klass: VmClassName | 'AdminVM', allowPool: boolean): CreateOptions {
  if (ctx.arg !== '' && (klass === 'AdminVM' || !VM_CLASSES[klass].template)) {
    throw new ProtocolError(`${klass} cannot be based on template`);
  }
  const opts = parseCreatePayload(ctx, allowPool);
  const name = opts.name;
  if (ctx.app.domains.byName(name)) throw new QubesVMAlreadyExistsError(`Qube already exists: ${name}`);
  if (ctx.arg !== '' && !ctx.app.domains.byName(ctx.arg)) throw new QubesVMNotFoundError(ctx.arg);
  // Upstream keeps the payload's label out of its message.
  if (opts.unknownLabel) throw QubesLabelNotFoundError.forLabel('untrusted label');
  if (opts.unknownPool !== undefined) throw new QubesException(`Unknown storage pool ${opts.unknownPool}`);
  return opts;
}

/** admin.vm.Create.AdminVM: checked like any creation, then refused (there is one dom0). */
function refuseAdminVm(allowPool: boolean) {
  return (ctx: CallContext): undefined => {
    checkCreate(ctx, 'AdminVM', allowPool);
    // Upstream's add_new_vm fails here: a new AdminVM would need qid 0, which cannot be set.
    throw new QubesPropertyValueError("property 'qid' on AdminVM instance cannot be set");
  };
}

async function createVm(ctx: CallContext, klass: VmClassName, allowPool: boolean): Promise<undefined> {
  const opts = checkCreate(ctx, klass, allowPool);
  const name = opts.name;
  const template = templateFor(ctx, klass);
  const dispid = klass === 'DispVM' ? freeDispid(ctx.app) : null;
  const vm = ctx.app.addNewVm(klass, { name, label: opts.label });
  try {
    if (dispid !== null) vm.props.init('dispid', dispid);
    if (template) vm.props.initChecked('template', template);
    if (klass === 'DispVM' && template) inheritFromDispvmTemplate(vm, template);
  } catch (e) {
    ctx.app.domains.delete(vm);
    throw e;
  }
  initPropertyTags(vm);
  ctx.app.announceNewVm(vm);
  vm.tags.add(`created-by-${ctx.src.name}`);
  await createOnDisk(ctx, vm, opts.pool, opts.pools);
  return undefined;
}

/** Creates the VM's disks; a VM whose disks cannot be made is removed again, as upstream does. */
async function createOnDisk(
  ctx: CallContext,
  vm: Vm,
  pool?: string,
  pools?: ReadonlyMap<string, string>,
): Promise<void> {
  try {
    await ctx.services.storage.create(vm, pool, pools);
    await copyWindowsPrivate(ctx.services.storage, vm);
  } catch (e) {
    // A creation that fails has removed what it made; after a failed copy upstream leaves the
    // disks behind, where a later qube of that name would find them. The failure is the answer: a
    // disk that cannot be removed either stays, as all do there.
    await ctx.services.storage.remove(vm).catch(() => undefined);
    ctx.app.domains.delete(vm);
    throw e;
  }
  // Inherited firewall rules are kept in the qube's own file like any other.
  if (vm.firewall !== DEFAULT_FIREWALL) await ctx.services.vmFiles.saveFirewall(vm, vm.firewall);
  ctx.app.events.fire(vm, 'domain-create-on-disk');
}

/**
 * The preload request: upstream's domain-preload-dispvm-start handler first
 * checks that the template's tools announce the services a preloaded
 * disposable is waited for with.
 */
function checkPreloadSupported(base: Vm): void {
  const missing = missingPreloadServices(base);
  if (missing.length > 0) {
    throw new QubesValueError(
      `Qube does not support the RPC(s) '${missing.join(', ')}' but tried to preload, check if template is outdated`,
    );
  }
}

export const vm = {
  classList: (): string => VM_CLASS_NAMES.map((c) => `${c}\n`).join(''),

  list: (ctx: CallContext): string => {
    if (!ctx.dest.isAdminVm) return listLine(ctx.dest);
    return ctx.app.domains
      .sorted()
      .filter((d) => ctx.services.access.vmVisible(ctx, d))
      .map(listLine)
      .join('');
  },

  /**
   * Ours, not upstream's: admin.vm.List and every listed qube's
   * admin.vm.property.GetAll in one call, for `qvm ls` (a call per qube is
   * most of its time with many qubes). Per qube: its List line, its GetAll
   * body, then an empty line; GetAll lines are never empty, so the empty line
   * ends the block. A qube whose GetAll the policy would refuse the caller
   * gets an empty body.
   */
  listWithProperties: (ctx: CallContext): string =>
    ctx.app.domains
      .sorted()
      .filter((d) => ctx.services.access.vmVisible(ctx, d))
      .map((d) => {
        const props = ctx.services.access.mayCall(ctx, 'admin.vm.property.GetAll', d)
          ? getAllBody(d.props)
          : '';
        return `${listLine(d)}${props}\n`;
      })
      .join(''),

  create: (klass: VmClassName) => (ctx: CallContext) => createVm(ctx, klass, false),
  refuseAdminVm,
  createInPool: (klass: VmClassName) => (ctx: CallContext) => createVm(ctx, klass, true),

  createDisposable: async (ctx: CallContext): Promise<string | undefined> => {
    if (ctx.arg !== '' && ctx.arg !== 'preload')
      throw new PermissionDenied(`Argument not in "'', 'preload'"`);
    const payload = ctx.payload.toString('latin1');
    if (payload !== '' && payload !== 'uuid') {
      throw new ProtocolError("Invalid payload, expected empty string or 'uuid'");
    }
    const base = ctx.dest.isAdminVm ? ctx.src.props.tryGet(P.default_dispvm) : ctx.dest;
    if (ctx.arg === 'preload') {
      if (!base) throw new QubesException('No default disposable template set for the caller');
      // Only a disposable template (AppVM, StandaloneVM) handles the preload event; others ignore it.
      if (base.props.has('template_for_dispvms')) {
        checkPreloadSupported(base);
        await ctx.services.preload?.refill(base, 'autostart was requested');
      }
      return undefined;
    }
    // getattr(None, 'template_for_dispvms', False) refuses a missing default the same way.
    if (!base?.bool('template_for_dispvms')) {
      throw new QubesException(
        'Refusing to create disposable out of app qube which has template_for_dispvms=False',
      );
    }
    const { storage, vmFiles, preload } = ctx.services;
    const disp =
      (await preload?.take(base)) ?? (await newDisposable({ app: ctx.app, storage, vmFiles }, base));
    disp.tags.add(`created-by-${ctx.src.name}`);
    disp.tags.add(`disp-created-by-${ctx.src.name}`);
    return payload === 'uuid' ? `uuid:${disp.uuid}` : disp.name;
  },

  remove: async (ctx: CallContext): Promise<undefined> => {
    const target = ctx.dest;
    if (target.isAdminVm) throw new QubesVMInUseError("'dom0' cannot be removed");
    if (target.bool('installed_by_rpm')) {
      throw new QubesVMInUseError(`VM installed by package manager: ${target.name}`);
    }
    if (target.powerState !== 'Halted') throw QubesVMNotHaltedError.forVm(target.name);
    ctx.app.removeVm(target);
    await ctx.services.lifecycle.forget(target);
    await ctx.services.storage.remove(target);
    await ctx.services.vmFiles.removeVmDir(target);
    return undefined;
  },

  currentState: async (ctx: CallContext): Promise<string> => {
    const s = await ctx.services.lifecycle.currentState(ctx.dest);
    return `mem=${s.memKb} mem_static_max=${s.memStaticMaxKb} cputime=${s.cputime} power_state=${s.powerState}`;
  },
};
