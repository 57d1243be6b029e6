import { describe, expect, it } from 'vitest';
import { QubesDb, QubesDbError } from '../src/index.js';

function filled(): QubesDb {
  const db = new QubesDb();
  for (const key of ['/name', '/qubes-service/cups', '/qubes-service/ntpd', '/qubes-servicex', '/a', '/ab'])
    db.write(key, `v${key}`);
  return db;
}

describe('QubesDb', () => {
  it('keeps keys in byte order and lists by any prefix, not only directories', () => {
    const db = filled();
    expect(db.list('')).toEqual([
      '/a',
      '/ab',
      '/name',
      '/qubes-service/cups',
      '/qubes-service/ntpd',
      '/qubes-servicex',
    ]);
    expect(db.list('/qubes-service/')).toEqual(['/qubes-service/cups', '/qubes-service/ntpd']);
    expect(db.list('/qubes-serv')).toEqual(['/qubes-service/cups', '/qubes-service/ntpd', '/qubes-servicex']);
    expect(db.list('/nothing')).toEqual([]);
  });

  it('multireads a prefix in order and the whole database in reverse order', () => {
    const db = filled();
    expect(db.multiread('/a').map(([k, v]) => `${k}=${v.toString()}`)).toEqual(['/a=v/a', '/ab=v/ab']);
    expect(db.multiread('').map(([k]) => k)).toEqual([...db.list('')].reverse());
  });

  it('overwrites a key in place', () => {
    const db = filled();
    db.write('/name', 'other');
    expect(db.read('/name')?.toString()).toBe('other');
    expect(db.size).toBe(6);
  });

  it('removes one key exactly, or a directory with a trailing slash', () => {
    const db = filled();
    expect(db.rm('/a')).toBe(true);
    expect(db.list('/a')).toEqual(['/ab']);
    expect(db.rm('/a')).toBe(false);
    expect(db.rm('/qubes-service')).toBe(false);
    expect(db.rm('/qubes-service/')).toBe(true);
    expect(db.list('/qubes-serv')).toEqual(['/qubes-servicex']);
    expect(db.rm('/nothing/')).toBe(false);
  });

  it('refuses keys and values upstream refuses', () => {
    const db = new QubesDb();
    for (const key of ['name', '/dir/', '/a b', '/' + 'x'.repeat(63), '']) {
      expect(() => db.write(key, 'v')).toThrow(QubesDbError);
    }
    expect(() => db.write('/a', Buffer.from('a\0'))).toThrow(QubesDbError);
    expect(() => db.write('/a', 'x'.repeat(3072))).toThrow(QubesDbError);
    db.write('/a', 'x'.repeat(3071));
    expect(db.size).toBe(1);
  });

  it('fires a key watch for that key only, a directory watch for all under it, once per registration', () => {
    const db = new QubesDb();
    const seen: string[] = [];
    db.watch('/qubes-service/cups', (p) => seen.push(`key:${p}`));
    db.watch('/qubes-service/', (p) => seen.push(`dir:${p}`));
    const second = db.watch('/qubes-service/', (p) => seen.push(`dir2:${p}`));
    db.write('/qubes-service/cups', '1');
    db.write('/qubes-service/cupsd', '1');
    db.write('/qubes-servicex', '1');
    expect(second()).toBe(true);
    expect(second()).toBe(false);
    db.rm('/qubes-service/');
    expect(seen).toEqual([
      'key:/qubes-service/cups',
      'dir:/qubes-service/cups',
      'dir2:/qubes-service/cups',
      'dir:/qubes-service/cupsd',
      'dir2:/qubes-service/cupsd',
      'dir:/qubes-service/',
    ]);
  });

  it('tells change listeners who made each change', () => {
    const db = new QubesDb();
    const changes: unknown[] = [];
    db.onChange((c) => changes.push([c.kind, c.path, c.value?.toString(), c.origin]));
    db.write('/a', '1', 'guest');
    db.rm('/a');
    expect(changes).toEqual([
      ['write', '/a', '1', 'guest'],
      ['rm', '/a', undefined, undefined],
    ]);
  });
});
