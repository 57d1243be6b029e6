import type { Caller } from './caller.js';
import { lines } from './caller.js';

export class TagApi {
  constructor(private readonly call: Caller) {}

  /** Sorted by the server. */
  async list(vm: string): Promise<string[]> {
    return lines(await this.call('admin.vm.tag.List', vm));
  }

  async has(vm: string, tag: string): Promise<boolean> {
    return (await this.call('admin.vm.tag.Get', vm, tag)).toString('utf8') === '1';
  }

  /** Adding a tag that is already there is not an error. */
  async add(vm: string, tag: string): Promise<void> {
    await this.call('admin.vm.tag.Set', vm, tag);
  }

  /** Throws QubesTagNotFoundError when the tag is not set. */
  async remove(vm: string, tag: string): Promise<void> {
    await this.call('admin.vm.tag.Remove', vm, tag);
  }
}
