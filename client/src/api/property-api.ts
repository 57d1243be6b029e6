import type { Caller } from './caller.js';
import { lines } from './caller.js';
import { QubesDaemonAccessError, QubesNoSuchPropertyError } from '../errors.js';
import {
  parseAllProperties,
  parsePropertyValue,
  parseTypedText,
  type PropertyType,
  type PropertyValue,
} from '../properties.js';

/**
 * The generic property calls, for one holder: a VM (`admin.vm.property.*`, dest = the VM) or the system
 * (`admin.property.*`, dest = dom0).
 */
export class PropertyApi {
  constructor(
    private readonly call: Caller,
    private readonly prefix: 'admin.vm.property.' | 'admin.property.',
    private readonly dest: string,
  ) {}

  async list(): Promise<string[]> {
    return lines(await this.call(`${this.prefix}List`, this.dest));
  }

  async get(name: string): Promise<PropertyValue> {
    return parsePropertyValue((await this.call(`${this.prefix}Get`, this.dest, name)).toString('utf8'));
  }

  /** One call for every property; server order (load stage, then name) is kept in the map. */
  async getAll(): Promise<Map<string, PropertyValue>> {
    return parseAllProperties((await this.call(`${this.prefix}GetAll`, this.dest)).toString('utf8'));
  }

  /**
   * Like upstream's client: GetAll, but an empty reply (an older or restricted qubesd) means "ask one by
   * one". Properties whose Get fails with a no-such-property error are left out.
   */
  async getAllOrEach(names: () => Promise<string[]>): Promise<Map<string, PropertyValue>> {
    try {
      return await this.getAll();
    } catch (err) {
      if (!(err instanceof QubesDaemonAccessError)) throw err;
    }
    const result = new Map<string, PropertyValue>();
    for (const name of await names()) {
      try {
        result.set(name, await this.get(name));
      } catch (err) {
        if (!(err instanceof QubesNoSuchPropertyError)) throw err;
      }
    }
    return result;
  }

  /** The value the property would have if reset; undefined when it has no default (e.g. `template`). */
  async getDefault(name: string): Promise<{ type: PropertyType; value: string } | undefined> {
    const body = (await this.call(`${this.prefix}GetDefault`, this.dest, name)).toString('utf8');
    return body === '' ? undefined : parseTypedText(body);
  }

  async set(name: string, value: string): Promise<void> {
    await this.call(`${this.prefix}Set`, this.dest, name, value);
  }

  async reset(name: string): Promise<void> {
    await this.call(`${this.prefix}Reset`, this.dest, name);
  }

  async help(name: string): Promise<string> {
    return (await this.call(`${this.prefix}Help`, this.dest, name)).toString('utf8');
  }
}
