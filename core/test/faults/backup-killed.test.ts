import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { headerFields, parseTar } from '../backup/fixture.js';
import { rawCall, request } from '../support/harness.js';
import { call, NO_HYPERVISOR_ENV, restart, spawnedDaemons, until } from '../support/killed-daemon.js';
import { spawnDaemon } from '../support/spawn.js';
import { persistedXml } from '../support/persisted.js';

const MiB = 1024 * 1024;
const started = spawnedDaemons();

const list = async (dir: string): Promise<string[]> => readdir(dir).catch(() => []);

describe('odysseyd killed (SIGKILL)', () => {
  it(
    'during a backup: restarts with qubes.xml intact, no partial archive or work file, and backs up again',
    { timeout: 120_000 },
    async () => {
      const d = await spawnDaemon([], undefined, NO_HYPERVISOR_ENV);
      started.push(d);
      const out = join(d.stateDir, 'out');
      const work = join(d.stateDir, 'backup-work');
      try {
        expect(await call(d, 'admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black')).toBe('0\0');
        expect(await call(d, 'admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue')).toBe('0\0');
        // Random bytes do not compress: the archive grows on disk for long enough to be caught.
        await writeFile(join(d.stateDir, 'appvms/work/private.img'), randomBytes(64 * MiB));
        await mkdir(out);
        await mkdir(join(d.stateDir, 'backup-profiles'));
        await writeFile(
          join(d.stateDir, 'backup-profiles/p.conf'),
          `include: [work]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: secret\n`,
        );
        const xml = await persistedXml(d.stateDir);
        const before = await call(d, 'admin.vm.List', 'dom0');
        expect(before).toMatch(/\nwork class=AppVM state=Halted /);

        let answered = '';
        void rawCall(d.socket, request('admin.backup.Execute', 'dom0', 'p')).then(
          (r) => (answered = r.toString('latin1')),
          () => undefined,
        );
        await until(async () => (await list(out)).length > 0 && (await list(work)).length > 0);
        d.proc.kill('SIGKILL');
        await d.exited;
        // The kill landed mid-backup: what it left is a hidden partial file, never a `qubes-*` archive.
        expect(answered).toBe('');
        const left = await list(out);
        expect(left).toHaveLength(1);
        expect(left[0]).toMatch(/^\.qubes-.*\.partial$/);
        expect(await list(work)).toHaveLength(1);

        const again = await restart(d.stateDir);
        started.push(again);
        // Start-up checkpointed the journal: qubes.xml is what was durable at the kill.
        expect(await readFile(join(d.stateDir, 'qubes.xml'), 'utf8')).toBe(xml);
        expect(await call(again, 'admin.vm.List', 'dom0')).toBe(before);
        expect(await call(again, 'admin.vm.property.Get', 'work', 'backup_timestamp')).toBe(
          '0\0default=True type=int ',
        );
        expect(await list(out)).toEqual([]);
        expect(await list(work)).toEqual([]);
        expect((await readdir(d.stateDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);

        expect(await call(again, 'admin.backup.Execute', 'dom0', 'p')).toBe('0\0');
        const done = await list(out);
        expect(done).toHaveLength(1);
        expect(done[0]).toMatch(/^qubes-\d{4}-\d\d-\d\dT\d{6}$/);
        const entries = parseTar(await readFile(join(out, done[0] as string)));
        expect(headerFields(entries).version).toBe('4');
        expect(entries.some((e) => /^vm\d+\/private\.img\.000\.enc$/.test(e.name))).toBe(true);
        expect(await list(work)).toEqual([]);
        expect(await call(again, 'admin.vm.property.Get', 'work', 'backup_timestamp')).toMatch(
          /^0\0default=False type=int \d+$/,
        );
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
