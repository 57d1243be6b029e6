import type { Caller } from './caller.js';
import { lines } from './caller.js';

export class LabelApi {
  constructor(private readonly call: Caller) {}

  /** Names in index order (the eight defaults first). */
  async list(): Promise<string[]> {
    return lines(await this.call('admin.label.List', 'dom0'));
  }

  /** Colour as `0xRRGGBB`. */
  async getColor(label: string): Promise<string> {
    return (await this.call('admin.label.Get', 'dom0', label)).toString('utf8');
  }

  async getIndex(label: string): Promise<number> {
    return Number((await this.call('admin.label.Index', 'dom0', label)).toString('utf8'));
  }

  /** `color` as `0xRRGGBB`. */
  async create(label: string, color: string): Promise<void> {
    await this.call('admin.label.Create', 'dom0', label, color);
  }

  async remove(label: string): Promise<void> {
    await this.call('admin.label.Remove', 'dom0', label);
  }
}
