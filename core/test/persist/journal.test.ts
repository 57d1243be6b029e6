import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { Journal, replayJournal } from '../../src/persist/journal.js';
import type { TestDaemon } from '../support/harness.js';
import { startDaemon } from '../support/harness.js';
import { appendixA } from '../api/fixture.js';

const dirs: string[] = [];
const daemons: TestDaemon[] = [];
afterEach(async () => {
  for (const t of daemons.splice(0)) await t.stop();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

function nth(a: readonly number[], i: number): number {
  const v = a[i];
  if (v === undefined) throw new Error(`no element ${i}`);
  return v;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-journal-'));
  dirs.push(dir);
  return dir;
}

/**
 * appendixA checkpointed into qubes.xml (the base a journal is replayed onto),
 * then a journal of one record per change, written from the running daemon's
 * own writer, with what a direct save of each state (the serialisation that
 * was written whole before the journal) gives.
 */
async function journaledChanges(): Promise<{
  base: string;
  journal: Buffer;
  saves: string[];
  ends: number[];
}> {
  const d = await appendixA();
  daemons.push(d);
  await d.daemon.store.flush();
  const baseXml = await readFile(join(d.stateDir, 'qubes.xml'));
  const path = join(await tempDir(), 'qubes.xml.journal');
  const journal = new Journal(path);
  await journal.open();
  const saves: string[] = [];
  const ends: number[] = [];
  const record = async (): Promise<void> => {
    const { head, domains } = d.daemon.store.writer.parts();
    await journal.append(head, domains);
    saves.push(d.daemon.store.writer.serialize());
    ends.push(journal.bytes);
  };
  await record();
  await d.ok('admin.vm.feature.Set', 'work', 'service.cups', '1');
  await record();
  await d.ok('admin.label.Create', 'dom0', 'mylabel', '0xabcdef');
  await d.ok('admin.vm.property.Set', 'work', 'label', 'mylabel');
  await record();
  await d.ok('admin.property.Set', 'dom0', 'default_dispvm', 'dvm1');
  await record();
  await d.ok('admin.vm.Remove', 'newvm');
  await record();
  await d.ok('admin.vm.tag.Set', 'sys-net', 'journaled');
  await record();
  await journal.close();
  // The daemon's own journal is emptied by its checkpoint at stop; then the state dir gets the
  // qubes.xml of before the changes back, as if the daemon had died before any checkpoint.
  const base = d.stateDir;
  await d.daemon.stop();
  daemons.splice(daemons.indexOf(d), 1);
  dirs.push(base);
  await writeFile(join(base, 'qubes.xml'), baseXml);
  return { base, journal: await readFile(path), saves, ends };
}

describe('qubes.xml journal', () => {
  it('replays to the bytes of a direct save, and start-up checkpoints them into qubes.xml', async () => {
    const { base, journal, saves, ends } = await journaledChanges();
    // Every record after the first repeats only the domains that changed.
    expect(nth(ends, 1) - nth(ends, 0)).toBeLessThan(nth(ends, 0) / 2);
    for (let i = 0; i < ends.length; i++)
      expect(replayJournal(journal.subarray(0, ends[i])).document).toBe(saves[i]);

    await writeFile(join(base, 'qubes.xml.journal'), journal);
    const again = await startDaemon({ stateDir: base });
    daemons.push(again);
    expect(await readFile(join(base, 'qubes.xml'), 'utf8')).toBe(saves.at(-1));
    expect((await readFile(join(base, 'qubes.xml.journal'))).length).toBe(0);
    expect(await again.ok('admin.vm.feature.Get', 'work', 'service.cups')).toBe('1');
    expect(await again.ok('admin.vm.property.Get', 'work', 'label')).toBe('default=False type=label mylabel');
    expect(await again.ok('admin.property.Get', 'dom0', 'default_dispvm')).toBe('default=False type=vm dvm1');
    expect((await again.call('admin.vm.property.Get', 'newvm', 'label')).toString('latin1')).toMatch(
      /^2\0QubesVMNotFoundError\0/,
    );
    expect(await again.ok('admin.vm.tag.Get', 'sys-net', 'journaled')).toBe('1');
    // The next save goes to the emptied journal as a whole record (or, once idle, into qubes.xml).
    await again.ok('admin.vm.feature.Set', 'work', 'after', 'yes');
    const next = replayJournal(await readFile(join(base, 'qubes.xml.journal')));
    expect(next.records).toBeLessThanOrEqual(1);
    expect(next.document ?? (await readFile(join(base, 'qubes.xml'), 'utf8'))).toBe(
      again.daemon.store.writer.serialize(),
    );
  });

  it('ignores a torn last record: start-up loads everything before it', async () => {
    const { base, journal, saves, ends } = await journaledChanges();
    const last = ends.length - 1;
    // Cut inside the last record's payload, and also just inside its header.
    for (const cut of [nth(ends, last) - 3, nth(ends, last - 1) + 5]) {
      expect(replayJournal(journal.subarray(0, cut)).document).toBe(saves[last - 1]);
    }
    // A flipped byte in the last record fails its checksum.
    const flipped = Buffer.from(journal);
    const at = nth(ends, last) - 2;
    flipped.writeUInt8(flipped.readUInt8(at) ^ 0x20, at);
    expect(replayJournal(flipped).records).toBe(last);

    await writeFile(join(base, 'qubes.xml.journal'), journal.subarray(0, nth(ends, last) - 3));
    const again = await startDaemon({ stateDir: base });
    daemons.push(again);
    expect(await readFile(join(base, 'qubes.xml'), 'utf8')).toBe(saves[last - 1]);
    expect(await again.ok('admin.vm.tag.List', 'sys-net')).not.toContain('journaled');
    expect((await again.call('admin.vm.property.Get', 'newvm', 'label')).toString('latin1')).toMatch(
      /^2\0QubesVMNotFoundError\0/,
    );
    expect(await again.ok('admin.vm.feature.Get', 'work', 'service.cups')).toBe('1');
  });

  it('never takes an older generation behind a shorter record for its successor', async () => {
    const d = await appendixA();
    daemons.push(d);
    const path = join(await tempDir(), 'qubes.xml.journal');
    const journal = new Journal(path);
    await journal.open();
    const record = (): Promise<void> => {
      const { head, domains } = d.daemon.store.writer.parts();
      return journal.append(head, domains);
    };
    await record();
    const firstEnd = journal.bytes;
    await d.ok('admin.vm.feature.Set', 'work', 'old', '1');
    await record();
    const old = await readFile(path);
    await journal.truncate();
    await d.ok('admin.vm.feature.Set', 'work', 'new', '1');
    await record();
    await journal.close();
    const fresh = await readFile(path);
    // A truncation that did not reach the disk, with the old generation's second record right
    // behind the new first one: its sequence number is not the successor's.
    const stale = Buffer.concat([fresh, old.subarray(firstEnd)]);
    const replayed = replayJournal(stale);
    expect(replayed.records).toBe(1);
    expect(replayed.document).toBe(d.daemon.store.writer.serialize());
    expect(replayed.document).toContain('<feature name="new">1</feature>');
  });
});
