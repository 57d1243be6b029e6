import type { Caller } from './caller.js';
import { lines } from './caller.js';
import { QubesFeatureNotFoundError } from '../errors.js';

export type FeatureLookup = 'Template' | 'Netvm' | 'AdminVM' | 'TemplateAndAdminVM';

/** Features: free-form string key/values on a qube ('' reads as false, absent differs from ''). */
export class FeatureApi {
  constructor(private readonly call: Caller) {}

  async list(vm: string): Promise<string[]> {
    return lines(await this.call('admin.vm.feature.List', vm));
  }

  /** Throws QubesFeatureNotFoundError when the feature is not set. */
  async get(vm: string, feature: string): Promise<string> {
    return (await this.call('admin.vm.feature.Get', vm, feature)).toString('utf8');
  }

  /** The value, or undefined when the feature is not set. */
  async find(vm: string, feature: string): Promise<string | undefined> {
    return absentAsUndefined(this.get(vm, feature));
  }

  /** Pairs in the server's order (insertion order). */
  async getAll(vm: string): Promise<[string, string][]> {
    const result: [string, string][] = [];
    for (const name of await this.list(vm)) result.push([name, await this.get(vm, name)]);
    return result;
  }

  /** Booleans follow upstream: true → "1", false → "" (which reads back as false). */
  async set(vm: string, feature: string, value: string | boolean): Promise<void> {
    const payload = typeof value === 'boolean' ? (value ? '1' : '') : value;
    await this.call('admin.vm.feature.Set', vm, feature, payload);
  }

  /** Throws QubesFeatureNotFoundError when the feature is not set. */
  async remove(vm: string, feature: string): Promise<void> {
    await this.call('admin.vm.feature.Remove', vm, feature);
  }

  /** The qube's value, else the first found along `via` (template chain, netvm chain, dom0); else undefined. */
  async check(vm: string, feature: string, via: FeatureLookup): Promise<string | undefined> {
    return absentAsUndefined(
      this.call(`admin.vm.feature.CheckWith${via}`, vm, feature).then((b) => b.toString('utf8')),
    );
  }

  checkWithTemplate(vm: string, feature: string): Promise<string | undefined> {
    return this.check(vm, feature, 'Template');
  }
}

async function absentAsUndefined(value: Promise<string>): Promise<string | undefined> {
  try {
    return await value;
  } catch (err) {
    if (err instanceof QubesFeatureNotFoundError) return undefined;
    throw err;
  }
}
