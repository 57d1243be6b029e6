import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalQubesDbServer, QubesDb } from '@odyssey/qubesdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runQubesDbCmd } from '../src/qubesdb-cmd.js';

let dir: string;
let db: QubesDb;
let server: LocalQubesDbServer;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qubesdb-cmd-'));
  db = new QubesDb();
  db.write('/name', 'work');
  db.write('/qubes-service/cups', '1');
  db.write('/qubes-service/ntpd', '0');
  db.write('/odd', Buffer.from('tab\there\x7f\xff', 'latin1'));
  server = await LocalQubesDbServer.listen(join(dir, 'qubesdb.sock'), db);
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the command as `name` (upstream's multi-call names) and collects its output. */
async function cmd(name: string, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: Buffer[] = [];
  let err = '';
  const code = await runQubesDbCmd(`/usr/bin/${name}`, argv, {
    stdout: (t) => void out.push(Buffer.from(t)),
    stderr: (t) => (err += t),
    socketPath: server.path,
    dom0SocketDir: dir,
  });
  return { code, out: Buffer.concat(out).toString('latin1'), err };
}

describe('qubesdb-read', () => {
  it('prints values, with -f the path too, and exits 2 for a missing key', async () => {
    expect(await cmd('qubesdb-read', '/name')).toEqual({ code: 0, out: 'work\n', err: '' });
    expect(await cmd('qubesdb-read', '-f', '/name', '/qubes-service/cups')).toEqual({
      code: 0,
      out: '/name = work\n/qubes-service/cups = 1\n',
      err: '',
    });
    expect(await cmd('qubesdb-read', '/name', '/missing')).toEqual({
      code: 2,
      out: 'work\n',
      err: 'Failed to read /missing\n',
    });
    expect(await cmd('qubesdb-read', '-q', '/missing')).toEqual({ code: 2, out: '', err: '' });
  });

  it('escapes non-printable bytes unless -r', async () => {
    expect((await cmd('qubesdb-read', '/odd')).out).toBe('tab\\x09here\x7f\\xff\n');
    expect((await cmd('qubesdb-read', '-r', '/odd')).out).toBe('tab\there\x7f\xff\n');
  });

  it('uses --default / -e for a missing key, only with one path', async () => {
    expect(await cmd('qubesdb-read', '--default', 'none', '/missing')).toEqual({
      code: 0,
      out: 'none\n',
      err: '',
    });
    expect(await cmd('qubesdb-read', '-e', 'x', '/name')).toEqual({ code: 0, out: 'work\n', err: '' });
    expect((await cmd('qubesdb-read', '-e', 'x', '/a', '/b')).code).toBe(1);
  });

  it('with -w waits for the key to appear; with -x removes it after reading', async () => {
    const waiting = cmd('qubesdb-read', '-w', '-x', '/later');
    // Usually after the command found nothing and set its watch; if earlier, its first read finds the key.
    await new Promise((resolve) => setTimeout(resolve, 100));
    db.write('/later', 'now');
    expect(await waiting).toEqual({ code: 0, out: 'now\n', err: '' });
    expect(db.has('/later')).toBe(false);
  });

  it('fails with 1 when the daemon is not there, and -d names the domain socket dom0 serves', async () => {
    expect(await cmd('qubesdb-read', '-d', 'nosuch', '/name')).toEqual({
      code: 1,
      out: '',
      err: 'Failed connect to nosuch daemon\n',
    });
    const dom0 = await LocalQubesDbServer.listen(join(dir, 'qubesdb.work.sock'), db);
    try {
      expect(await cmd('qubesdb-read', '-d', 'work', '/name')).toEqual({ code: 0, out: 'work\n', err: '' });
    } finally {
      await dom0.close();
    }
  });
});

describe('the other commands', () => {
  it('qubesdb-list prints paths relative to the prefix, or full with -f', async () => {
    expect(await cmd('qubesdb-list', '/qubes-service/')).toEqual({ code: 0, out: 'cups\nntpd\n', err: '' });
    expect((await cmd('qubesdb-list', '-f', '/qubes-')).out).toBe(
      '/qubes-service/cups\n/qubes-service/ntpd\n',
    );
    expect((await cmd('qubesdb-list', '/a', '/b')).code).toBe(1);
  });

  it('qubesdb-multiread prints path = value pairs', async () => {
    expect((await cmd('qubesdb-multiread', '/qubes-service/')).out).toBe('cups = 1\nntpd = 0\n');
  });

  it('qubesdb-write and qubesdb-rm change the database', async () => {
    expect(await cmd('qubesdb-write', '/a', '1', '/b', '2')).toEqual({ code: 0, out: '', err: '' });
    expect(db.read('/b')?.toString()).toBe('2');
    expect((await cmd('qubesdb-write', '/a')).code).toBe(1);
    expect(await cmd('qubesdb-rm', '/qubes-service/')).toEqual({ code: 0, out: '', err: '' });
    expect(db.list('/qubes-service/')).toEqual([]);
    // As libqubesdb: removing what is not there succeeds; a path the protocol cannot carry fails.
    expect(await cmd('qubesdb-rm', '/qubes-service/')).toEqual({ code: 0, out: '', err: '' });
    expect(await cmd('qubesdb-rm', '/a b')).toEqual({ code: 1, out: '', err: 'Failed to remove /a b\n' });
  });

  it('qubesdb-watch prints as many fired paths as -n asks', async () => {
    const watching = cmd('qubesdb-watch', '-n', '2', '/qubes-service/');
    let done = false;
    void watching.then(() => (done = true));
    for (let i = 0; !done; i++) {
      db.write(`/qubes-service/s${i}`, '1');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const { code, out } = await watching;
    expect(code).toBe(0);
    expect(out).toMatch(/^\/qubes-service\/s\d+\n\/qubes-service\/s\d+\n$/);
  });

  it('qubesdb-cmd takes the command from -c; options are checked as upstream does', async () => {
    expect((await cmd('qubesdb-cmd', '-c', 'read', '/name')).out).toBe('work\n');
    expect((await cmd('qubesdb-read', '-c', 'list', '/')).err).toBe('-c only valid for qubesdb-cmd\n');
    expect((await cmd('qubesdb-read', '-n', '3', '/name')).err).toBe('-n valid only for watch command\n');
    expect((await cmd('qubesdb-read')).code).toBe(0);
    expect((await cmd('qubesdb-read', '-z', '/name')).code).toBe(1);
  });
});
