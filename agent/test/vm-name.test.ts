import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { applyVmName, hostsWithName, nameFromQubesDb } from '../src/vm-name.js';

describe('hostsWithName', () => {
  it("replaces Debian's 127.0.1.1 line and keeps every other line", () => {
    const hosts = '127.0.0.1\tlocalhost\n127.0.1.1\tdebian-12\n::1\tlocalhost ip6-localhost\n';
    expect(hostsWithName(hosts, 'work')).toBe(
      '127.0.0.1\tlocalhost\n127.0.1.1\twork\n::1\tlocalhost ip6-localhost\n',
    );
  });

  it('adds the line after localhost when there is none, and is stable', () => {
    const once = hostsWithName('127.0.0.1 localhost\n::1 localhost\n', 'work');
    expect(once).toBe('127.0.0.1 localhost\n127.0.1.1\twork\n::1 localhost\n');
    expect(hostsWithName(once, 'work')).toBe(once);
  });
});

describe('applyVmName', () => {
  let dir: string;
  let named: string[];
  const setHostname = async (name: string) => void named.push(name);
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vm-name-'));
    named = [];
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('names the host and writes /etc/hosts', async () => {
    const hostsPath = join(dir, 'hosts');
    await writeFile(hostsPath, '127.0.0.1\tlocalhost\n');
    expect(await applyVmName('conf-debian', { hostsPath, setHostname })).toBe(true);
    expect(named).toEqual(['conf-debian']);
    expect(await readFile(hostsPath, 'utf8')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tconf-debian\n');
  });

  it('refuses a name no qube can have, touching nothing', async () => {
    const hostsPath = join(dir, 'hosts');
    await writeFile(hostsPath, '127.0.0.1\tlocalhost\n');
    for (const bad of ['', '-x', 'a b', 'a\n127.0.0.1 evil', 'x'.repeat(32), '../etc']) {
      expect(await applyVmName(bad, { hostsPath, setHostname })).toBe(false);
    }
    expect(named).toEqual([]);
    expect(await readFile(hostsPath, 'utf8')).toBe('127.0.0.1\tlocalhost\n');
  });
});

describe('nameFromQubesDb (--vm-name)', () => {
  let dir: string;
  let named: string[];
  let logged: string[];
  const setHostname = async (name: string) => void named.push(name);
  const log = (m: string) => void logged.push(m);
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vm-name-'));
    named = [];
    logged = [];
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it("names the host after QubesDB /name once it is synced", async () => {
    const hostsPath = join(dir, 'hosts');
    const db = { ready: Promise.resolve(), read: (p: string) => (p === '/name' ? 'conf-debian' : undefined) };
    await nameFromQubesDb(db, log, { hostsPath, setHostname });
    expect(named).toEqual(['conf-debian']);
    expect(await readFile(hostsPath, 'utf8')).toBe('127.0.0.1\tlocalhost\n127.0.1.1\tconf-debian\n');
    expect(logged).toEqual([]);
  });

  it('leaves the host as it is, saying why, when QubesDB never syncs, has no /name or a bad one', async () => {
    const hostsPath = join(dir, 'hosts');
    const never = { ready: new Promise<void>(() => undefined), read: () => 'x' };
    await nameFromQubesDb(never, log, { hostsPath, setHostname, waitMs: 10 });
    await nameFromQubesDb({ ready: Promise.resolve(), read: () => undefined }, log, { hostsPath, setHostname });
    await nameFromQubesDb({ ready: Promise.resolve(), read: () => 'a b' }, log, { hostsPath, setHostname });
    expect(named).toEqual([]);
    expect(logged).toEqual([
      'no QubesDB /name: the hostname stays as it is',
      'no QubesDB /name: the hostname stays as it is',
      "QubesDB /name is not a qube's name: the hostname stays as it is",
    ]);
  });
});
