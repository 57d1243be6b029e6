import { join } from 'node:path';

import type { PoolDirectory } from '../model/app.js';
import type { Attrs } from './qubes-xml.js';

/**
 * The pool configuration a fresh state dir starts with, as upstream's first
 * init creates it: `varlibqubes` at the state dir and `linux-kernel` for kernels.
 */
export function defaultPoolConfigs(stateDir: string): Attrs[] {
  return [
    {
      name: 'varlibqubes',
      dir_path: stateDir,
      driver: 'file',
      revisions_to_keep: '1',
      ephemeral_volatile: 'False',
    },
    { name: 'linux-kernel', dir_path: join(stateDir, 'vm-kernels'), driver: 'linux-kernel' },
  ];
}

/** Pool names and upstream's default_pool rule, over pool configurations. */
export class ConfiguredPools implements PoolDirectory {
  constructor(
    readonly configs: Attrs[],
    private readonly stateDir: string,
  ) {}

  has(name: string): boolean {
    return this.configs.some((c) => c.name === name);
  }

  names(): string[] {
    return this.configs.map((c) => c.name ?? '');
  }

  defaultPoolName(): string | undefined {
    if (this.has('default')) return 'default';
    return this.configs.find(
      (c) => (c.driver === 'file' || c.driver === 'file-reflink') && c.dir_path === this.stateDir,
    )?.name;
  }
}
