import type { DomainStats, PowerState, VmmCapabilities } from '@odyssey/hal';

import type { FirewallRule, FirewallState } from '../model/firewall.js';
import type { Vm } from '../model/vm.js';

/** Power operations, backed by the Vmm (DomainManager). */
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
  /**
   * The backend forgets a removed VM's domain, as upstream's Remove undefines it in libvirt; one
   * the backend never defined is nothing to forget, and a backend that is not connected keeps it.
   */
  forget(vm: Vm): Promise<void>;
  /** What the connected backend can do; null while none is connected. */
  capabilities(): VmmCapabilities | null;
}

/** Per-VM files kept outside qubes.xml, as upstream keeps them. */
export interface VmFiles {
  /** The qube's rules, or why its firewall.xml cannot be loaded (never throws). */
  loadFirewall(vm: Vm): Promise<FirewallState>;
  saveFirewall(vm: Vm, rules: readonly FirewallRule[]): Promise<void>;
  readNotes(vm: Vm): Promise<string>;
  writeNotes(vm: Vm, notes: string): Promise<void>;
  /** Removes the VM's directory with everything in it. */
  removeVmDir(vm: Vm): Promise<void>;
}

/**
 * A step of starting a domain, run once the hypervisor runs it and before its start returns
 * (upstream: QubesDB filled, then the qrexec agent awaited). Steps run in the order they were
 * registered; one that fails fails the start, and the domain is killed.
 */
export interface AfterStart {
  afterStart(domain: { readonly name: string; readonly xid: number }): Promise<void>;
}
