import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BackendLoadError, backendModule, loadBackend, type BackendContext } from '../src/index.js';

const context: BackendContext = { runtimeDir: '/nonexistent', log: () => undefined };

/** A backend whose Vmm answers only capabilities(): enough for the loader to accept it. */
const MODULE = `export const createBackend = (ctx) => ({
  vmm: { capabilities: () => ({ name: 'tiny:' + ctx.runtimeDir }) },
});
`;

describe('backend loader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'odyssey-loader-'));
    await mkdir(join(dir, 'pkg', 'lib'), { recursive: true });
    await writeFile(
      join(dir, 'pkg', 'package.json'),
      JSON.stringify({ type: 'module', exports: { '.': { default: './lib/entry.js' } } }),
    );
    await writeFile(join(dir, 'pkg', 'lib', 'entry.js'), MODULE);
    await writeFile(join(dir, 'file.mjs'), MODULE);
    await writeFile(join(dir, 'nothing.mjs'), 'export const createVmm = () => ({});\n');
    await writeFile(
      join(dir, 'throws.mjs'),
      "export const createBackend = () => { throw new Error('no hypervisor'); };\n",
    );
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('maps a bare name to @odyssey/backend-NAME and keeps package names', async () => {
    expect(await backendModule('kvm')).toBe('@odyssey/backend-kvm');
    expect(await backendModule('@vendor/backend-x')).toBe('@vendor/backend-x');
  });

  it('imports a bare name that is not one of ours as the package it names', async () => {
    expect(await backendModule('commander')).toBe('commander');
    await expect(loadBackend('commander', context)).rejects.toThrow(
      'backend package commander does not export createBackend',
    );
  });

  it('loads a module file and a package directory through its exports', async () => {
    for (const name of [join(dir, 'file.mjs'), join(dir, 'pkg')]) {
      const backend = await loadBackend(name, context);
      expect(backend.vmm.capabilities().name).toBe('tiny:/nonexistent');
      expect(backend.vchan).toBeUndefined();
    }
  });

  it('refuses what is not a backend, naming the package and the reason', async () => {
    await expect(loadBackend(join(dir, 'nothing.mjs'), context)).rejects.toThrow(
      /does not export createBackend/,
    );
    await expect(loadBackend(join(dir, 'throws.mjs'), context)).rejects.toThrow(
      /createBackend failed: no hypervisor/,
    );
    await expect(loadBackend(join(dir, 'missing'), context)).rejects.toThrow(/no such file or directory/);
    await expect(loadBackend('no-such-backend-xyz', context)).rejects.toBeInstanceOf(BackendLoadError);
  });
});
