import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { Backend, BackendContext, CreateBackend } from './vmm.js';

/** The backend could not be loaded or created: the daemon and the suite stop on it. */
export class BackendLoadError extends Error {
  override readonly name = 'BackendLoadError';
}

/**
 * What `--backend` names, as an import specifier: `kvm` → `@odyssey/backend-kvm` when that is
 * installed, any other bare name as the package it names; a scoped package name as given; a path (starting with `.` or `/`) to a module file, or to a package directory,
 * whose package.json says which module is its entry point.
 */
export async function backendModule(name: string): Promise<string> {
  if (name.startsWith('.') || isAbsolute(name)) {
    const path = resolve(name);
    const st = await stat(path).catch(() => null);
    if (st === null) throw new BackendLoadError(`backend ${name}: no such file or directory`);
    return pathToFileURL(st.isDirectory() ? await packageEntry(path) : path).href;
  }
  if (name.includes('/') || name.startsWith('@')) return name;
  // One of ours first, then an unscoped package of that name.
  const candidates = [`@odyssey/backend-${name}`, name];
  for (const candidate of candidates) {
    try {
      import.meta.resolve(candidate);
      return candidate;
    } catch {
      // not installed: the next candidate
    }
  }
  throw new BackendLoadError(`cannot load backend package ${candidates.join(' or ')}: neither is installed`);
}

/**
 * The directory of the package `--backend` names, where its package.json is (and what it declares
 * besides its entry point); undefined for a lone module file, which has no package of its own.
 */
export async function backendPackageDir(name: string): Promise<string | undefined> {
  const spec = await backendModule(name);
  if (name.startsWith('.') || isAbsolute(name)) {
    const path = resolve(name);
    return (await stat(path)).isDirectory() ? path : undefined;
  }
  // A bare name: up from its resolved entry point to the package.json that names it.
  for (
    let dir = dirname(fileURLToPath(import.meta.resolve(spec)));
    dir !== dirname(dir);
    dir = dirname(dir)
  ) {
    const pkg = await readFile(join(dir, 'package.json'), 'utf8').catch(() => undefined);
    if (pkg !== undefined && (JSON.parse(pkg) as { name?: unknown }).name === spec) return dir;
  }
  return undefined;
}

async function packageEntry(dir: string): Promise<string> {
  let pkg: { main?: unknown; exports?: unknown };
  try {
    pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as typeof pkg;
  } catch (e) {
    throw new BackendLoadError(`backend directory ${dir}: cannot read package.json: ${(e as Error).message}`);
  }
  const entry = exportedEntry(pkg.exports) ?? (typeof pkg.main === 'string' ? pkg.main : 'index.js');
  return join(dir, entry);
}

/** The `.` entry of a package's exports: a string, or `{ import | default }`, possibly nested under `.`. */
function exportedEntry(exports: unknown): string | null {
  if (typeof exports === 'string') return exports;
  if (typeof exports !== 'object' || exports === null) return null;
  const record = exports as Record<string, unknown>;
  if ('.' in record) return exportedEntry(record['.']);
  return exportedEntry(record['import'] ?? record['default']);
}

/**
 * Loads a backend package and creates its backend: the package must export
 * `createBackend: CreateBackend`. Every failure is a BackendLoadError naming the package.
 */
export async function loadBackend(name: string, context: BackendContext): Promise<Backend> {
  const spec = await backendModule(name);
  let mod: { createBackend?: unknown };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    throw new BackendLoadError(`cannot load backend package ${spec}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof mod.createBackend !== 'function')
    throw new BackendLoadError(`backend package ${spec} does not export createBackend`);
  let backend: Backend;
  try {
    backend = await (mod.createBackend as CreateBackend)(context);
  } catch (e) {
    throw new BackendLoadError(`backend ${spec}: createBackend failed: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (typeof backend?.vmm?.capabilities !== 'function')
    throw new BackendLoadError(`backend ${spec}: createBackend returned no Vmm`);
  return backend;
}
