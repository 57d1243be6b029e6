import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { QubesEvent } from '../../src/model/events.js';
import { startDaemon } from '../support/harness.js';
import type { TestDaemon } from '../support/harness.js';
import {
  backupService,
  decryptScrypt,
  hasScryptCli,
  headerFields,
  innerFile,
  parseTar,
  scryptCliDecrypt,
  writeProfile,
} from './fixture.js';

const PASS = 'correct horse';

let d: TestDaemon;
let out: string;

async function setup(): Promise<void> {
  d = await startDaemon();
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=blue');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=other label=red');
  out = join(d.stateDir, 'out');
  await mkdir(out);
}

/** The single archive in the output directory. */
async function archive(): Promise<Buffer> {
  const files = await readdir(out);
  expect(files).toHaveLength(1);
  expect(files[0]).toMatch(/^qubes-\d{4}-\d\d-\d\dT\d{6}$/);
  return readFile(join(out, files[0] as string));
}

function profile(extra = ''): string {
  return `include: [work]\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: ${PASS}\n${extra}`;
}

beforeEach(setup);
afterEach(async () => {
  await d.stop();
});

describe('backup archive (format 4)', () => {
  it('lays out header, hmac, qubes.xml and the VM files, and round-trips the volume', async () => {
    const data = randomBytes(300_000);
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), data);
    await d.ok('admin.vm.notes.Set', 'work', '', 'some notes');
    await writeProfile(d, 'p', profile());
    await backupService(d).execute('p');

    const entries = parseTar(await archive());
    expect(entries.map((e) => e.name)).toEqual([
      'backup-header',
      'backup-header.hmac',
      'qubes.xml.000.enc',
      'vm2/private.img.000.enc',
      'vm2/notes.txt.000.enc',
    ]);
    const header = headerFields(entries);
    expect(Object.keys(header)).toEqual([
      'version',
      'encrypted',
      'compressed',
      'compression-filter',
      'hmac-algorithm',
      'backup-id',
    ]);
    expect(header).toMatchObject({
      version: '4',
      encrypted: 'True',
      compressed: 'True',
      'compression-filter': 'gzip',
      'hmac-algorithm': 'scrypt',
    });
    expect(header['backup-id']).toMatch(new RegExp(`^\\d{8}T\\d{6}-${process.pid}$`));
    const id = header['backup-id'] as string;

    // The hmac file is the header encrypted under `backup-header!<passphrase>`.
    const hmac = entries.find((e) => e.name === 'backup-header.hmac')?.data as Buffer;
    expect(decryptScrypt(hmac, `backup-header!${PASS}`)).toEqual(entries[0]?.data);
    expect(() => decryptScrypt(hmac, `backup-header!wrong`)).toThrow(/hmac/);

    const vol = innerFile(entries, 'vm2/private.img', PASS, id);
    expect(vol.entries.map((e) => e.name)).toEqual(['vm2/private.img']);
    expect(vol.entries[0]?.data.equals(data)).toBe(true);
    // A chunk is bound to its name: another file's key does not open it.
    const chunk = entries.find((e) => e.name === 'vm2/private.img.000.enc')?.data as Buffer;
    expect(() => decryptScrypt(chunk, `${id}!vm2/notes.txt.000!${PASS}`)).toThrow();
    expect(innerFile(entries, 'vm2/notes.txt', PASS, id).entries[0]?.data.toString()).toBe('some notes');

    const xml = innerFile(entries, 'qubes.xml', PASS, id).entries[0]?.data.toString() as string;
    const features = (name: string) =>
      /<feature[^>]*>[^<]*<\/feature>|<feature[^>]*\/>/g[Symbol.match](
        xml.slice(xml.indexOf(`<property name="name">${name}<`)).split('</domain>')[0] as string,
      );
    expect(features('work')).toEqual([
      '<feature name="backup-content">1</feature>',
      '<feature name="backup-path">vm2/</feature>',
      expect.stringMatching(/^<feature name="backup-size">\d+<\/feature>$/),
    ]);
    expect(features('other')).toEqual(['<feature name="backup-content"></feature>']);
    // The live app keeps no backup-* features, but records when the VM was backed up.
    expect(d.daemon.app.domains.get('work').features.get('backup-content')).toBeUndefined();
    const stamp = await d.ok('admin.vm.property.Get', 'work', 'backup_timestamp');
    expect(Number(stamp.split(' ').pop())).toBeGreaterThan(Date.now() / 1000 - 60);
  });

  it.skipIf(!hasScryptCli)('writes files the scrypt tool decrypts and verifies', async () => {
    const data = randomBytes(50_000);
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), data);
    await writeProfile(d, 'p', profile('compression: false\n'));
    await backupService(d).execute('p');
    const entries = parseTar(await archive());
    const id = headerFields(entries)['backup-id'] as string;
    const tmp = join(d.stateDir, 'chunk');
    const hmac = entries.find((e) => e.name === 'backup-header.hmac')?.data as Buffer;
    await writeFile(tmp, hmac);
    expect(scryptCliDecrypt(tmp, `backup-header!${PASS}`)).toEqual(entries[0]?.data);
    await writeFile(tmp, entries.find((e) => e.name === 'vm2/private.img.000.enc')?.data as Buffer);
    const inner = parseTar(scryptCliDecrypt(tmp, `${id}!vm2/private.img.000!${PASS}`));
    expect(inner[0]?.data.equals(data)).toBe(true);
    expect(() => scryptCliDecrypt(tmp, `${id}!vm2/private.img.001!${PASS}`)).toThrow(/scrypt dec failed/);
  });

  it('carries every stored string byte for byte: its qubes.xml is well-formed and loads back the same', async () => {
    const kernelopts = 'one\n  two\r\n\tthree <&> ]]> &#13; ';
    await d.ok('admin.vm.property.Set', 'work', 'kernelopts', kernelopts);
    await d.ok('admin.vm.feature.Set', 'work', 'padded', '  x  ');
    await d.ok('admin.vm.firewall.Set', 'work', '', 'action=accept comment= spaced \n');
    const poolDir = join(d.stateDir, 'pool\twith tab');
    await d.ok('admin.pool.Add', 'dom0', 'file', `name=tabbed\ndir_path=${poolDir}\n`);
    // A small image keeps the archive small; the volume is not what this test is about.
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), 'data');
    await writeProfile(d, 'p', profile());
    await backupService(d).execute('p');
    const entries = parseTar(await archive());
    const id = headerFields(entries)['backup-id'] as string;
    const xml = innerFile(entries, 'qubes.xml', PASS, id).entries[0]?.data as Buffer;
    const firewall = innerFile(entries, 'vm2/firewall.xml', PASS, id).entries[0]?.data as Buffer;
    expect(firewall).toEqual(await readFile(join(d.stateDir, 'appvms/work/firewall.xml')));

    const restored = join(d.stateDir, 'restored');
    await mkdir(join(restored, 'appvms/work'), { recursive: true });
    await writeFile(join(restored, 'qubes.xml'), xml);
    await writeFile(join(restored, 'appvms/work/firewall.xml'), firewall);
    for (const file of ['qubes.xml', 'appvms/work/firewall.xml']) {
      const lint = spawnSync('xmllint', ['--noout', join(restored, file)], { encoding: 'utf8' });
      if (lint.error) console.log('xmllint (libxml2-utils) not found: well-formedness not checked');
      else expect(lint.stderr).toBe('');
    }
    const again = await startDaemon({ stateDir: restored });
    try {
      expect(await again.ok('admin.vm.property.Get', 'work', 'kernelopts')).toBe(
        `default=False type=str ${kernelopts}`,
      );
      expect(await again.ok('admin.vm.feature.Get', 'work', 'padded')).toBe('  x  ');
      expect(await again.ok('admin.vm.firewall.Get', 'work')).toBe('action=accept comment= spaced \n');
      expect(await again.ok('admin.pool.Info', 'dom0', 'tabbed')).toContain(`dir_path=${poolDir}\n`);
    } finally {
      await again.stop();
    }
  });

  it('cuts big files into numbered chunks and leaves them uncompressed on request', async () => {
    const data = randomBytes(200_000);
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), data);
    await writeProfile(d, 'p', profile('compression: false\n'));
    await backupService(d, { chunkSize: 64 * 1024 }).execute('p');
    const entries = parseTar(await archive());
    const header = headerFields(entries);
    expect(header.compressed).toBe('False');
    const vol = innerFile(entries, 'vm2/private.img', PASS, header['backup-id'] as string, false);
    // 512 header + 200000 data + padding + 1024 end = 201728 bytes: four chunks.
    expect(vol.chunks).toEqual([0, 1, 2, 3].map((i) => `vm2/private.img.00${i}.enc`));
    expect(vol.entries[0]?.data.equals(data)).toBe(true);
  });

  it.skipIf(spawnSync('xz', ['--version']).status !== 0)('runs a named compression program', async () => {
    const data = randomBytes(10_000);
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), data);
    await writeProfile(d, 'p', profile('compression: xz\n'));
    await backupService(d).execute('p');
    const entries = parseTar(await archive());
    const header = headerFields(entries);
    expect(header).toMatchObject({ compressed: 'True', 'compression-filter': 'xz' });
    const chunk = entries.find((e) => e.name === 'vm2/private.img.000.enc')?.data as Buffer;
    const xz = decryptScrypt(chunk, `${header['backup-id']}!vm2/private.img.000!${PASS}`);
    const inner = spawnSync('xz', ['-d'], { input: xz }).stdout;
    expect(parseTar(inner)[0]?.data.equals(data)).toBe(true);
  });

  it('writes a volume with holes as a GNU sparse member that GNU tar expands', async () => {
    const img = join(d.stateDir, 'appvms/work/private.img');
    const data = randomBytes(70_000);
    await truncate(img, 0);
    await truncate(img, 256 << 20);
    const fh = await open(img, 'r+');
    await fh.write(data, 0, data.length, 5 << 20);
    await fh.write(data, 0, 1000, (256 << 20) - 1000);
    await fh.close();
    await writeProfile(d, 'p', profile());
    await backupService(d).execute('p');
    const entries = parseTar(await archive());
    const id = headerFields(entries)['backup-id'] as string;
    const chunks = entries.filter((e) => e.name.startsWith('vm2/private.img.'));
    expect(chunks.map((c) => c.name)).toEqual(['vm2/private.img.000.enc']);
    const compressed = decryptScrypt(chunks[0]?.data as Buffer, `${id}!vm2/private.img.000!${PASS}`);
    expect(compressed.length).toBeLessThan(100_000);
    const inner = gunzipSync(compressed);
    expect(inner.length).toBeLessThan(80_000);
    expect(parseTar(inner)[0]?.name).toBe('vm2/private.img');
    // What upstream's restore runs on each file: `tar -xvvO <name>`, size from the listing on stderr.
    const tar = spawnSync('tar', ['-xvvO', 'vm2/private.img'], { input: inner, maxBuffer: 1 << 30 });
    expect(tar.status).toBe(0);
    expect(tar.stdout.equals(await readFile(img))).toBe(true);
    expect(/^[^ ]+ [^ ]+\/[^ ]+ *([0-9]+) .*/.exec(tar.stderr.toString())?.[1]).toBe(String(256 << 20));
  });

  it('backs up the include_in_backups VMs by default, honours exclude, and writes an empty placeholder', async () => {
    await d.ok('admin.vm.property.Set', 'other', 'include_in_backups', 'False');
    await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=skip label=red');
    await d.ok('admin.vm.tag.Set', 'skip', 'nobackup');
    await writeProfile(
      d,
      'p',
      `include:\ndestination_vm: dom0\ndestination_path: ${out}\npassphrase_text: ${PASS}\nexclude: ['$tag:nobackup']\n`,
    );
    // Small images: reading gigabytes of holes is not what this test is about.
    for (const img of [
      'vm-templates/tpl/root.img',
      'vm-templates/tpl/private.img',
      'appvms/work/private.img',
    ]) {
      await writeFile(join(d.stateDir, img), 'data');
    }
    await backupService(d).execute('p');
    const names = parseTar(await archive()).map((e) => e.name);
    // tpl (qid 1) root+private, work (qid 2) private; dom0's home is not ours to back up.
    expect(names.slice(3)).toEqual([
      'vm1/root.img.000.enc',
      'vm1/private.img.000.enc',
      'vm2/private.img.000.enc',
    ]);
  });

  it('reports progress as backup-progress events', async () => {
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), randomBytes(3 << 20));
    await writeProfile(d, 'p', profile());
    const events: QubesEvent[] = [];
    const unsubscribe = d.daemon.app.events.subscribe((e) => events.push(e));
    await backupService(d).execute('p');
    unsubscribe();
    const progress = events.flatMap((e) => (e.name === 'backup-progress' ? [e] : []));
    expect(progress.length).toBeGreaterThan(1);
    expect(
      progress.every((e) => e.subject === null && Object.keys(e.args).join() === 'backup_profile,progress'),
    ).toBe(true);
    expect(progress.every((e) => e.args.backup_profile === 'p')).toBe(true);
    const values = progress.map((e) => e.args.progress);
    expect(values.every((v) => /^\d+(\.\d+)?$/.test(v) && v.includes('.'))).toBe(true);
    expect(values.at(-1)).toBe('100.0');
  });

  it('cancels a running backup and refuses a second run of the same profile', async () => {
    await writeFile(join(d.stateDir, 'appvms/work/private.img'), randomBytes(4 << 20));
    await writeProfile(d, 'p', profile());
    const service = backupService(d, { chunkSize: 64 * 1024 });
    expect(() => service.cancel('p')).toThrow('Backup operation not running');
    const started = () =>
      new Promise<void>((resolve) => {
        const off = d.daemon.app.events.subscribe((e) => {
          if (e.name === 'backup-progress') {
            off();
            resolve();
          }
        });
      });
    let progress = started();
    const outcome = service.execute('p').catch((e: unknown) => e);
    await progress;
    await expect(service.execute('p')).rejects.toMatchObject({ name: 'BackupAlreadyRunningError' });
    service.cancel('p');
    expect(await outcome).toMatchObject({ name: 'BackupCancelledError', message: 'Backup cancelled' });
    expect(() => service.cancel('p')).toThrow('Backup operation not running');
    // Daemon shutdown stops whatever runs.
    progress = started();
    const again = service.execute('p').catch((e: unknown) => e);
    await progress;
    service.cancelAll();
    expect(await again).toMatchObject({ name: 'BackupCancelledError' });
  });

  it('refuses bad profiles with upstream exception types', async () => {
    const service = backupService(d);
    const fails = async (yaml: string | null, name: string, message: string | RegExp) => {
      if (yaml !== null) await writeProfile(d, 'bad', yaml);
      await expect(service.execute('bad')).rejects.toMatchObject({ name, message });
    };
    await fails(null, 'QubesBackupProfileNotFoundError', 'Backup profile does not exist: bad');
    await fails(
      'include:\ndestination_path: /x\n',
      'QubesException',
      "Invalid backup profile - missing 'destination_vm'",
    );
    await fails(
      'include:\ndestination_vm: nope\ndestination_path: /x\npassphrase_text: a\n',
      'QubesException',
      'Invalid destination_vm specified in backup profile',
    );
    await fails(
      'include:\ndestination_vm: dom0\ndestination_path: /x\n',
      'QubesException',
      'Invalid backup profile - you need to specify passphrase_text or passphrase_vm',
    );
    await fails(
      'include:\ndestination_vm: dom0\ndestination_path: /x\npassphrase_vm: nope\n',
      'QubesException',
      'Invalid backup profile - invalid passphrase_vm',
    );
    await fails(
      'include:\ndestination_vm: dom0\ndestination_path: /x\npassphrase_vm: work\n',
      'QubesNotImplementedError',
      /qubes\.BackupPassphrase/,
    );
    await fails(
      'include:\ndestination_vm: work\ndestination_path: /x\npassphrase_text: a\n',
      'QubesNotImplementedError',
      /destination_vm work/,
    );
    await fails(
      'include:\ndestination_vm: dom0\ndestination_path: /no/such/dir/file\npassphrase_text: a\n',
      'QubesException',
      'ERROR: the backup directory for /no/such/dir/file does not exists',
    );
  });
});
