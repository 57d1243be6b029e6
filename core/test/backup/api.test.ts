import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { exc, startDaemon } from '../support/harness.js';
import type { TestDaemon } from '../support/harness.js';
import { writeProfile } from './fixture.js';

let d: TestDaemon;
let out: string;

beforeEach(async () => {
  d = await startDaemon();
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other label=red');
  await d.ok('admin.vm.property.Set', 'other', 'include_in_backups', 'False');
  // Small images with known disk usage (one 4 KiB block each, or none).
  await writeFile(join(d.stateDir, 'vm-templates/tpl/root.img'), '');
  await writeFile(join(d.stateDir, 'vm-templates/tpl/private.img'), '');
  await writeFile(join(d.stateDir, 'appvms/work/private.img'), Buffer.alloc(3000, 1));
  out = join(d.stateDir, 'out');
  await mkdir(out);
});
afterEach(async () => {
  await d.stop();
});

const text = (b: Buffer) => b.toString('utf8');

describe('admin.backup.* over the socket', () => {
  it('Info answers upstream’s summary table', async () => {
    await writeProfile(d, 'p', `include: null\ndestination_vm: dom0\ndestination_path: ${out}\n`);
    expect(await d.ok('admin.backup.Info', 'dom0', 'p')).toBe(
      [
        '------------------+--------------+--------------+',
        '               VM |         type |         size |',
        '------------------+--------------+--------------+',
        '              tpl |  Template VM |            0 |',
        '             work |           VM |      4.0 KiB |',
        '------------------+--------------+--------------+',
        '      Total size: |                     4.0 KiB |',
        '------------------+--------------+--------------+',
        'VMs not selected for backup:',
        ' - dom0',
        ' - other',
        '',
      ].join('\n'),
    );
  });

  it('refuses bad profile ids and unknown profiles with upstream’s exceptions', async () => {
    for (const method of ['admin.backup.Execute', 'admin.backup.Cancel', 'admin.backup.Info']) {
      expect(text(await d.call(method, 'dom0', '../p'))).toBe(
        exc('ProtocolError', 'Backup profile ID must not contain forward slash character'),
      );
      expect(text(await d.call(method, 'work', 'p'))).toBe(
        exc('ProtocolError', 'expected destination to be AdminVM'),
      );
    }
    for (const method of ['admin.backup.Execute', 'admin.backup.Info']) {
      expect(text(await d.call(method, 'dom0', 'nope'))).toBe(
        exc('QubesBackupProfileNotFoundError', 'Backup profile does not exist: nope'),
      );
    }
    expect(text(await d.call('admin.backup.Cancel', 'dom0', 'nope'))).toBe(
      exc('QubesException', 'Backup operation not running'),
    );
  });

  it('Execute writes the archive and Cancel stops a running one', async () => {
    await writeProfile(
      d,
      'p',
      `include: [work]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: secret\n`,
    );
    expect(text(await d.call('admin.backup.Execute', 'dom0', 'p'))).toBe('0\0');
    expect(await readdir(out)).toHaveLength(1);
    expect(await d.ok('admin.vm.property.Get', 'work', 'backup_timestamp')).toMatch(
      /^default=False type=int \d+$/,
    );

    const running = d.call('admin.backup.Execute', 'dom0', 'p');
    let cancelled = false;
    let finished = false;
    void running.then(() => (finished = true));
    // Each encrypted file costs a real key derivation, so the backup runs long enough to be caught.
    while (!cancelled && !finished) {
      cancelled = text(await d.call('admin.backup.Cancel', 'dom0', 'p')) === '0\0';
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(cancelled).toBe(true);
    expect(text(await running)).toBe(exc('BackupCancelledError', 'Backup cancelled'));
  });
});
