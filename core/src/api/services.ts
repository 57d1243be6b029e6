import type { QubesEvent } from '../model/events.js';
import type { Vm } from '../model/vm.js';
import type { Backups } from '../backup/backups.js';
import type { Lifecycle, VmFiles } from '../lifecycle/ports.js';
import type { VmStorage } from '../storage/vm-storage.js';
import type { CallContext } from './call-context.js';

/**
 * What upstream does with `admin-permission:<method>` events: the last word on
 * a call after qrexec policy, and the per-VM filters of List and Events for
 * callers other than dom0.
 */
export interface AccessControl {
  /** May the caller see this VM in admin.vm.List? */
  vmVisible(ctx: CallContext, vm: Vm): boolean;
  /** Would the policy let the caller make this argument-less call with this VM as its target? */
  mayCall(ctx: CallContext, method: string, vm: Vm): boolean;
  /** May the caller make one of its qubes (or a global default) refer to this VM? */
  mayReference(ctx: CallContext, vm: Vm): boolean;
  /** May the caller receive this event on admin.Events? */
  eventVisible(ctx: CallContext, event: QubesEvent): boolean;
}

export interface ApiServices {
  readonly lifecycle: Lifecycle;
  readonly vmFiles: VmFiles;
  readonly access: AccessControl;
  readonly storage: VmStorage;
  readonly backups: Backups;
  /** Preloaded disposables; absent where nothing preloads (CreateDisposable then always makes a new one). */
  readonly preload?: DisposablePreload;
}

/** The preload pool as CreateDisposable uses it (lifecycle/preload-pool.ts). */
export interface DisposablePreload {
  /** A preloaded disposable of `template`, unpaused and marked used; null when none is ready. */
  take(template: Vm): Promise<Vm | null>;
  /** Fills the template's pool and resolves once it is full. */
  refill(template: Vm, reason: string): Promise<void>;
}
