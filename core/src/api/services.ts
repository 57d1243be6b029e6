import type { VmmCapabilities } from '../hal/capabilities.js';
import type { DomainStats, PowerState } from '../hal/vmm.js';
import type { QubesEvent } from '../model/events.js';
import type { FirewallRule } from '../model/firewall.js';
import type { Vm } from '../model/vm.js';
import type { VmStorage } from '../storage/vm-storage.js';
import type { CallContext } from './call-context.js';

/** Power operations, backed by the Vmm (see ../lifecycle). */
export interface Lifecycle {
  start(vm: Vm): Promise<void>;
  shutdown(vm: Vm, options: { force: boolean; wait: boolean }): Promise<void>;
  kill(vm: Vm): Promise<void>;
  pause(vm: Vm): Promise<void>;
  unpause(vm: Vm): Promise<void>;
  suspend(vm: Vm): Promise<void>;
  resume(vm: Vm): Promise<void>;
  currentState(
    vm: Vm,
  ): Promise<{ memKb: number; memStaticMaxKb: number; cputime: number; powerState: PowerState }>;
  stats(): Promise<readonly DomainStats[]>;
  /** The pty of a running VM's serial console. */
  console(vm: Vm): Promise<string>;
  /** What the connected backend can do; null while none is connected. */
  capabilities(): VmmCapabilities | null;
}

/** Per-VM files kept outside qubes.xml, as upstream keeps them. */
export interface VmFiles {
  saveFirewall(vm: Vm, rules: readonly FirewallRule[]): Promise<void>;
  readNotes(vm: Vm): Promise<string>;
  writeNotes(vm: Vm, notes: string): Promise<void>;
  /** Removes the VM's directory with everything in it. */
  removeVmDir(vm: Vm): Promise<void>;
}

/**
 * What upstream does with `admin-permission:<method>` events: the last word on
 * a call after qrexec policy, and the per-VM filters of List and Events for
 * callers other than dom0.
 */
export interface AccessControl {
  /** May the caller see this VM in admin.vm.List? */
  vmVisible(ctx: CallContext, vm: Vm): boolean;
  /** May the caller make one of its qubes (or a global default) refer to this VM? */
  mayReference(ctx: CallContext, vm: Vm): boolean;
  /** May the caller receive this event on admin.Events? */
  eventVisible(ctx: CallContext, event: QubesEvent): boolean;
}

/** admin.backup.*: profiles are read per call; a profile runs at most once at a time. */
export interface Backups {
  /** Resolves when the archive is written; BackupCancelledError if Cancel stopped it. */
  execute(profile: string): Promise<void>;
  cancel(profile: string): void;
  /** The summary table of what the profile would back up. */
  info(profile: string): Promise<string>;
}

export interface ApiServices {
  readonly lifecycle: Lifecycle;
  readonly vmFiles: VmFiles;
  readonly access: AccessControl;
  readonly storage: VmStorage;
  readonly backups: Backups;
}
