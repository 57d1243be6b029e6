import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { VchanTransport } from '../hal/vchan.js';
import type { BackendContext, Vmm, VmmFactory } from '../hal/vmm.js';

/** A backend's dom0 end of the vchans, if it has one: `export function createVchanTransport(context)`. */
export type VchanTransportFactory = (context: BackendContext) => VchanTransport;

export interface LoadedBackend {
  readonly vmm: Vmm;
  /** Without it the daemon runs no qrexec: domains cannot call dom0 or each other. */
  readonly vchan: VchanTransport | null;
}

/** `kvm` → `@odyssey/backend-kvm`; a package name or a path to a module is used as given. */
export function backendModule(name: string): string {
  if (name.startsWith('.') || isAbsolute(name)) return pathToFileURL(resolve(name)).href;
  if (name.includes('/') || name.startsWith('@')) return name;
  return `@odyssey/backend-${name}`;
}

/**
 * Loads a backend package: it must export `createVmm: VmmFactory`, and may
 * export `createVchanTransport: VchanTransportFactory`.
 */
export async function loadBackend(name: string, context: BackendContext): Promise<LoadedBackend> {
  const spec = backendModule(name);
  let mod: { createVmm?: VmmFactory; createVchanTransport?: VchanTransportFactory };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    throw new Error(`cannot load backend package ${spec}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof mod.createVmm !== 'function')
    throw new Error(`backend package ${spec} does not export createVmm`);
  if (mod.createVchanTransport !== undefined && typeof mod.createVchanTransport !== 'function')
    throw new Error(`backend package ${spec}: createVchanTransport is not a function`);
  return { vmm: mod.createVmm(context), vchan: mod.createVchanTransport?.(context) ?? null };
}
