import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { rawCall, request } from '../support/harness.js';
import { call, NO_HYPERVISOR_ENV, restart, spawnedDaemons, until } from '../support/killed-daemon.js';
import { spawnDaemon } from '../support/spawn.js';

const MiB = 1024 * 1024;
const started = spawnedDaemons();

const withSize = (data: Buffer): Buffer => Buffer.concat([Buffer.from(`${data.length}\n`), data]);

describe('odysseyd killed (SIGKILL)', () => {
  it(
    'during an import: restarts with the old data as the volume and the import file gone',
    { timeout: 60_000 },
    async () => {
      const d = await spawnDaemon([], undefined, NO_HYPERVISOR_ENV);
      started.push(d);
      const dir = join(d.stateDir, 'appvms', 'sa');
      try {
        expect(await call(d, 'admin.vm.Create.StandaloneVM', 'dom0', '', 'name=sa label=red')).toBe('0\0');
        const old = randomBytes(MiB);
        expect(await call(d, 'admin.vm.volume.ImportWithSize', 'sa', 'private', withSize(old))).toBe('0\0');
        const info = await call(d, 'admin.vm.volume.Info', 'sa', 'private');

        // 16 of 64 MiB: several stages reach the import file, then the daemon dies.
        const sock = connect(d.socket);
        sock.on('error', () => undefined);
        sock.write(request('admin.vm.volume.ImportWithSize', 'sa', 'private'));
        sock.write(`${64 * MiB}\n`);
        sock.write(randomBytes(16 * MiB));
        const importFile = join(dir, 'private-import.img');
        await until(async () => ((await stat(importFile).catch(() => undefined))?.blocks ?? 0) > 0);
        d.proc.kill('SIGKILL');
        await d.exited;
        sock.destroy();
        expect((await readdir(dir)).includes('private-import.img')).toBe(true);

        const again = await restart(d.stateDir);
        started.push(again);
        expect(await call(again, 'admin.vm.volume.Info', 'sa', 'private')).toBe(info);
        expect((await readFile(join(dir, 'private.img'))).equals(old)).toBe(true);
        // A call on the volume runs after the start-up cleanup of that volume (its lock orders them).
        expect(await call(again, 'admin.vm.volume.Resize', 'sa', 'private', String(MiB))).toBe('0\0');
        expect((await readdir(dir)).filter((n) => n.includes('import') || n.includes('~'))).toEqual([]);
        const next = randomBytes(MiB);
        expect(await call(again, 'admin.vm.volume.ImportWithSize', 'sa', 'private', withSize(next))).toBe(
          '0\0',
        );
        expect((await readFile(join(dir, 'private.img'))).equals(next)).toBe(true);
      } finally {
        for (const s of started.splice(0)) {
          if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
          await s.exited;
        }
        await rm(d.stateDir, { recursive: true, force: true });
      }
    },
  );

  it(
    'during saves: restarts with every acknowledged change and no temp file',
    { timeout: 60_000 },
    async () => {
      const d = await spawnDaemon([], undefined, NO_HYPERVISOR_ENV);
      started.push(d);
      try {
        const acked: number[] = [];
        const calls = Array.from({ length: 300 }, (_, i) =>
          rawCall(d.socket, request('admin.vm.feature.Set', 'dom0', `f${i}`, `v${i}`)).then(
            (r) => {
              if (r.toString('latin1') === '0\0') acked.push(i);
            },
            () => undefined,
          ),
        );
        await until(async () => acked.length >= 50);
        d.proc.kill('SIGKILL');
        await d.exited;
        await Promise.all(calls);
        // What a kill inside writeFileAtomic leaves, planted so the cleanup is checked whenever the kill landed.
        await writeFile(join(d.stateDir, '.qubes.xml.4242.1700000000000.tmp'), '<qubes');

        const again = await restart(d.stateDir);
        started.push(again);
        for (const i of acked)
          expect(await call(again, 'admin.vm.feature.Get', 'dom0', `f${i}`)).toBe(`0\0v${i}`);
        expect((await readdir(d.stateDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
      } finally {
        for (const s of started.splice(0)) {
          if (s.proc.exitCode === null) s.proc.kill('SIGKILL');
          await s.exited;
        }
        await rm(d.stateDir, { recursive: true, force: true });
      }
    },
  );
});
