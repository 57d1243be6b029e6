import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LocalQubesDbServer, QubesDb } from '@odyssey/qubesdb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runFeaturesRequest } from '../src/features-request.js';

let dir: string;
let db: QubesDb;
let server: LocalQubesDbServer;
let commits: string[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'features-request-'));
  db = new QubesDb();
  server = await LocalQubesDbServer.listen(join(dir, 'qubesdb.sock'), db);
  commits = [];
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the command against the test's database; a commit records what dom0 would read then. */
async function run(...argv: string[]): Promise<{ code: number; err: string }> {
  let err = '';
  const code = await runFeaturesRequest(argv, {
    stderr: (t) => (err += t),
    socketPath: server.path,
    commit: () => {
      commits.push(JSON.stringify(db.multiread('/features-request/').map(([k, v]) => [k, v.toString()])));
      return Promise.resolve(0);
    },
  });
  return { code, err };
}

const requests = (): Record<string, string> =>
  Object.fromEntries(db.multiread('/features-request/').map(([k, v]) => [k, v.toString()]));

describe('qvm-features-request', () => {
  it('writes each KEY=VALUE under /features-request/ and commits only when told', async () => {
    expect(await run('qrexec=1', 'os-version=12', 'empty=')).toEqual({ code: 0, err: '' });
    expect(await run('supported-rpc.qubes.VMShell=1')).toEqual({ code: 0, err: '' });
    expect(commits).toEqual([]);
    expect(requests()).toEqual({
      '/features-request/qrexec': '1',
      '/features-request/os-version': '12',
      '/features-request/empty': '',
      '/features-request/supported-rpc.qubes.VMShell': '1',
    });
    // Requests written by earlier runs go with a later commit, as several post-install scripts add theirs.
    expect(await run('--commit', 'vmexec=1')).toEqual({ code: 0, err: '' });
    expect(commits).toHaveLength(1);
    expect(JSON.parse(commits[0] ?? '')).toContainEqual(['/features-request/vmexec', '1']);
    expect(JSON.parse(commits[0] ?? '')).toContainEqual(['/features-request/qrexec', '1']);
  });

  it('commits alone without touching the database', async () => {
    expect(await run('--commit')).toEqual({ code: 0, err: '' });
    expect(commits).toEqual(['[]']);
  });

  it('refuses arguments that are not KEY=VALUE with usage and code 2, writing nothing', async () => {
    for (const bad of ['qrexec', '=1', '--force']) {
      const { code, err } = await run('os=x', bad, '--commit');
      expect(code).toBe(2);
      expect(err).toContain('usage: qvm-features-request');
    }
    expect(requests()).toEqual({});
    expect(commits).toEqual([]);
  });

  it("fails on a key QubesDB refuses, as upstream's write fails", async () => {
    await expect(run('bad key=1')).rejects.toThrow();
    expect(requests()).toEqual({});
  });
});
