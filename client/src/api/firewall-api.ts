import type { Caller } from './caller.js';
import { lines } from './caller.js';

/** Firewall rules as API strings (`action=accept proto=tcp dstports=80-80`); see FirewallRule to edit them. */
export class FirewallApi {
  constructor(private readonly call: Caller) {}

  async get(vm: string): Promise<string[]> {
    return lines(await this.call('admin.vm.firewall.Get', vm));
  }

  /** Replaces the whole list; an empty list is not accepted by qubesd, so pass `['action=accept']` to reset. */
  async set(vm: string, rules: readonly string[]): Promise<void> {
    await this.call('admin.vm.firewall.Set', vm, '', rules.map((r) => `${r}\n`).join(''));
  }

  async reload(vm: string): Promise<void> {
    await this.call('admin.vm.firewall.Reload', vm);
  }
}
