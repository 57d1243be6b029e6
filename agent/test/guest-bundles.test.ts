import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/**
 * The programs the Debian template runs in a qube are single files (scripts/bundle-guest.mjs,
 * part of `npm run build`) in /opt/odyssey, with only koffi beside them: what the template's
 * units and commands name must be a bundle the build makes, and a bundle must load nothing else.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const BUNDLES = join(REPO, 'agent/dist/bundle');
const TEMPLATE = join(REPO, 'templates');
const run = promisify(execFile);

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** Every `/opt/odyssey/<name>.mjs` the template's files and its build script name. */
async function namedByTemplate(): Promise<Set<string>> {
  const named = new Set<string>();
  for (const file of await filesUnder(TEMPLATE)) {
    for (const m of (await readFile(file, 'utf8')).matchAll(/\/opt\/odyssey\/([\w-]+\.mjs)/g))
      if (m[1]) named.add(m[1]);
  }
  return named;
}

describe('the guest bundles', () => {
  it('exist for every program the template runs, and the build installs each of them', async () => {
    const bundles = (await readdir(BUNDLES)).filter((f) => f.endsWith('.mjs')).sort();
    const named = [...(await namedByTemplate())].sort();
    expect(named).toEqual(
      expect.arrayContaining(['xen-guest-main.mjs', 'kvm-guest-main.mjs', 'qubesdb-cmd-main.mjs']),
    );
    for (const name of named) expect(bundles).toContain(name);
    const script = await readFile(join(TEMPLATE, 'build-template.sh'), 'utf8');
    const installed = /GUEST_PROGRAMS=\(([^)]*)\)/.exec(script)?.[1]?.split(/\s+/).filter(Boolean) ?? [];
    expect(installed.map((p) => `${p}.mjs`).sort()).toEqual(bundles);
  });

  it('import only node builtins and koffi', async () => {
    for (const name of await readdir(BUNDLES)) {
      const text = await readFile(join(BUNDLES, name), 'utf8');
      const specifiers = [
        ...text.matchAll(/^import\s[^;]*?from\s*["']([^"']+)["']/gm),
        ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
        ...text.matchAll(/\b(?:__)?require\(\s*["']([^"']+)["']\s*\)/g),
      ].map((m) => m[1] ?? '');
      expect(specifiers.length, name).toBeGreaterThan(0);
      expect(
        specifiers.filter((s) => !isBuiltin(s) && s !== 'koffi'),
        name,
      ).toEqual([]);
    }
  });

  it('run from a directory holding nothing else', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'odyssey-bundle-'));
    try {
      await copyFile(join(BUNDLES, 'features-request-main.mjs'), join(dir, 'features-request-main.mjs'));
      const { stderr } = await run(process.execPath, [join(dir, 'features-request-main.mjs'), '--help'], {
        cwd: dir,
      });
      expect(stderr.split('\n')[0]).toBe('usage: qvm-features-request [-h] [--commit] [KEY=VALUE ...]');
      await copyFile(join(BUNDLES, 'qubesdb-cmd-main.mjs'), join(dir, 'qubesdb-cmd-main.mjs'));
      const usage = await run(process.execPath, [join(dir, 'qubesdb-cmd-main.mjs'), '-c', 'read', '--help'], {
        cwd: dir,
      }).catch((e: { stderr: string }) => e);
      expect(usage.stderr).toMatch(/^Usage: .*qubesdb-cmd-main\.mjs \[-frq\]/m);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
