import { randomBytes } from 'node:crypto';
import { open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { rawCall, request } from '../support/harness.js';
import { call, NO_HYPERVISOR_ENV, restart, spawnedDaemons, until } from '../support/killed-daemon.js';
import { spawnDaemon } from '../support/spawn.js';

const MiB = 1024 * 1024;
const started = spawnedDaemons();

const withSize = (data: Buffer): Buffer => Buffer.concat([Buffer.from(`${data.length}\n`), data]);

/** The pid of a process-backend domain, from the record its daemon keeps for a later one. */
const domainPid = async (stateDir: string, vm: string): Promise<number> =>
  (JSON.parse(await readFile(join(stateDir, 'run', 'process', vm, 'domain.json'), 'utf8')) as { pid: number })
    .pid;

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

/** The first bytes of a (sparse, 2 GiB) disk image. */
async function readHead(image: string, length: number): Promise<Buffer> {
  const fh = await open(image, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Writes `data` where the running VM's private disk is, as its guest would. */
async function guestWrites(image: string, data: Buffer): Promise<void> {
  const fh = await open(image, 'r+');
  try {
    await fh.write(data, 0, data.length, 0);
  } finally {
    await fh.close();
  }
}

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
    'while qubes run: one that stops meanwhile has its volumes finished at restart, one still running keeps them',
    { timeout: 60_000 },
    async () => {
      const d = await spawnDaemon([], undefined, NO_HYPERVISOR_ENV);
      started.push(d);
      const dir = (vm: string) => join(d.stateDir, 'appvms', vm);
      try {
        expect(await call(d, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).toBe('0\0');
        for (const vm of ['gone', 'stays']) {
          expect(await call(d, 'admin.vm.Create.AppVM', 'dom0', 'tpl', `name=${vm} label=red`)).toBe('0\0');
          expect(await call(d, 'admin.vm.Start', vm)).toBe('0\0');
        }
        const whileRunning = [
          'private-dirty.img',
          'private.img',
          'root-dirty.img',
          'root.img',
          'volatile-dirty.img',
        ];
        expect((await readdir(dir('gone'))).sort()).toEqual(whileRunning);
        const written = randomBytes(4096);
        await guestWrites(join(dir('gone'), 'private-dirty.img'), written);

        d.proc.kill('SIGKILL');
        await d.exited;
        // The qube stops while no daemon runs (its whole process group: the domain and its agent).
        killGroup(await domainPid(d.stateDir, 'gone'));

        const again = await restart(d.stateDir);
        started.push(again);
        await again.logged('gone stopped while no daemon watched: its volumes are finished');
        expect((await call(again, 'admin.vm.List', 'gone')).split(' ')[2]).toBe('state=Halted');
        // As a stop: the private data committed with the replaced image kept as a revision, the
        // root snapshot and the volatile image discarded.
        const left = (await readdir(dir('gone'))).sort();
        expect(left.filter((n) => !/^private\.img\.\d+@/.test(n))).toEqual(['private.img']);
        expect(left).toHaveLength(2);
        expect((await readHead(join(dir('gone'), 'private.img'), written.length)).equals(written)).toBe(true);
        // The qube still running was adopted: the image it writes is still its own.
        expect((await call(again, 'admin.vm.List', 'stays')).split(' ')[2]).toBe('state=Running');
        expect((await readdir(dir('stays'))).sort()).toEqual(whileRunning);
        expect(await call(again, 'admin.vm.Kill', 'stays')).toBe('0\0');
      } finally {
        // A failure above may leave the adopted qube running; it is not the daemon's child.
        for (const vm of ['gone', 'stays']) {
          const pid = await domainPid(d.stateDir, vm).catch(() => undefined);
          if (pid !== undefined) killGroup(pid);
        }
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
