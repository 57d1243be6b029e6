import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { BackendContext, VmmFactory } from '../hal/vmm.js';

/** `kvm` → `@odyssey/backend-kvm`; a package name or a path to a module is used as given. */
export function backendModule(name: string): string {
  if (name.startsWith('.') || isAbsolute(name)) return pathToFileURL(resolve(name)).href;
  if (name.includes('/') || name.startsWith('@')) return name;
  return `@odyssey/backend-${name}`;
}

/** Loads a backend package: it must export `createVmm: VmmFactory`. */
export async function loadBackend(name: string, context: BackendContext): Promise<ReturnType<VmmFactory>> {
  const spec = backendModule(name);
  let mod: { createVmm?: VmmFactory };
  try {
    mod = (await import(spec)) as { createVmm?: VmmFactory };
  } catch (e) {
    throw new Error(`cannot load backend package ${spec}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof mod.createVmm !== 'function')
    throw new Error(`backend package ${spec} does not export createVmm`);
  return mod.createVmm(context);
}
