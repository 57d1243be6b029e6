import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { writeServiceFlags } from '../src/service-flags.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function root(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-service-flags-'));
  dirs.push(dir);
  return dir;
}

/** A QubesDB of fixed entries. */
function db(entries: Record<string, string>) {
  return {
    ready: Promise.resolve(),
    read: (path: string) => entries[path],
    entries: (prefix: string) =>
      Object.entries(entries)
        .filter(([path]) => path.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : 1)),
  };
}

const list = async (dir: string) => (await readdir(dir)).sort();

describe("upstream's qubes-sysinit flags", () => {
  it("turns an AppVM's defaults and QubesDB's services into /run/qubes-service files, with the type and persistence markers", async () => {
    const dir = await root();
    const logs: string[] = [];
    const on = await writeServiceFlags(
      db({
        '/qubes-vm-type': 'AppVM',
        '/qubes-vm-persistence': 'rw-only',
        '/qubes-service/cups': '1',
        '/qubes-service/tracker': '0',
        '/qubes-service/odd': 'yes',
        '/qubes-service/-dash': '1',
        '/qubes-service/../escape': '1',
      }),
      (m) => logs.push(m),
      { root: dir },
    );
    expect(on).toEqual([
      'cups',
      'evolution-data-server',
      'meminfo-writer',
      'qubes-update-check',
      'software-rendering',
    ]);
    expect(await list(join(dir, 'run/qubes-service'))).toEqual(on);
    expect(await list(join(dir, 'run/qubes'))).toEqual(['persistent-rw-only', 'this-is-appvm']);
    expect(await list(dir)).toEqual(['run']);
    expect(logs).toEqual([]);
  });

  it('gives a NetVM and a TemplateVM their own defaults; a disposable only the common ones', async () => {
    const net = await root();
    expect(
      await writeServiceFlags(
        db({ '/qubes-vm-type': 'NetVM', '/qubes-vm-persistence': 'rw-only' }),
        () => undefined,
        { root: net },
      ),
    ).toEqual([
      'meminfo-writer',
      'network-manager',
      'qubes-firewall',
      'qubes-network',
      'qubes-update-check',
      'qubes-updates-proxy',
      'software-rendering',
    ]);
    const tpl = await root();
    expect(
      await writeServiceFlags(
        db({ '/qubes-vm-type': 'TemplateVM', '/qubes-vm-persistence': 'full' }),
        () => undefined,
        { root: tpl },
      ),
    ).toContain('updates-proxy-setup');
    expect(await list(join(tpl, 'run/qubes'))).toEqual(['persistent-full', 'this-is-templatevm']);
    const disp = await root();
    expect(
      await writeServiceFlags(
        db({ '/qubes-vm-type': 'DispVM', '/qubes-vm-persistence': 'none' }),
        () => undefined,
        { root: disp },
      ),
    ).toEqual(['meminfo-writer', 'software-rendering']);
    expect(await list(join(disp, 'run/qubes'))).toEqual(['persistent-none']);
  });

  it('removes the file of a service turned off that an earlier run left, and names an unknown type', async () => {
    const dir = await root();
    await mkdir(join(dir, 'run/qubes-service'), { recursive: true });
    await writeFile(join(dir, 'run/qubes-service/cups'), '');
    const logs: string[] = [];
    await writeServiceFlags(
      db({ '/qubes-vm-type': 'Nonsense', '/qubes-service/cups': '0' }),
      (m) => logs.push(m),
      { root: dir },
    );
    expect(await list(join(dir, 'run/qubes-service'))).toEqual(['meminfo-writer', 'software-rendering']);
    expect(await list(join(dir, 'run/qubes'))).toEqual([]);
    expect(logs).toEqual([
      'service flags: unknown qube type "Nonsense": only QubesDB\'s services',
      'service flags: unknown persistence ""',
    ]);
  });

  it('writes nothing, and says so, while QubesDB has not arrived', async () => {
    const dir = await root();
    const logs: string[] = [];
    const never = { ...db({ '/qubes-vm-type': 'AppVM' }), ready: new Promise<void>(() => undefined) };
    expect(await writeServiceFlags(never, (m) => logs.push(m), { root: dir, waitMs: 10 })).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
    expect(logs).toEqual(['service flags: QubesDB has not arrived: none written']);
  });
});
