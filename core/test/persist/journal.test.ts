import { createHash } from 'node:crypto';
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

/** appendixA's daemon and a journal of its own, a record of the daemon's state as it is on each `record()`. */
async function openJournal(): Promise<{
  d: TestDaemon;
  path: string;
  journal: Journal;
  record: () => Promise<void>;
}> {
  const d = await appendixA();
  daemons.push(d);
  const path = join(await tempDir(), 'qubes.xml.journal');
  const journal = new Journal(path);
  await journal.open();
  const record = (): Promise<void> => {
    const { head, domains } = d.daemon.store.writer.parts();
    return journal.append(head, domains);
  };
  return { d, path, journal, record };
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
    // Emptied, not cut: the zeros written ahead of the records stay for the next ones.
    expect(replayJournal(await readFile(join(base, 'qubes.xml.journal'))).records).toBe(0);
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
    const { d, path, journal, record } = await openJournal();
    await record();
    const firstEnd = journal.bytes;
    await d.ok('admin.vm.feature.Set', 'work', 'old', '1');
    await record();
    const old = await readFile(path);
    await journal.clear();
    await d.ok('admin.vm.feature.Set', 'work', 'new', '1');
    await record();
    const freshEnd = journal.bytes;
    await journal.close();
    const fresh = await readFile(path);
    // The old generation's second record right behind the new first one (as a shorter new first
    // record leaves it in the file): its generation is not the successor's.
    const stale = Buffer.concat([fresh.subarray(0, freshEnd), old.subarray(firstEnd)]);
    const replayed = replayJournal(stale);
    expect(replayed.records).toBe(1);
    expect(replayed.document).toBe(d.daemon.store.writer.serialize());
    expect(replayed.document).toContain('<feature name="new">1</feature>');
  });

  it('replays a journal of a build before generations (records without one) as one generation', () => {
    // Record framing as journal.ts documents it: u32 LE length, 8 bytes of SHA-256, JSON payload.
    const record = (payload: object): Buffer => {
      const body = Buffer.from(JSON.stringify(payload), 'utf8');
      const header = Buffer.alloc(12);
      header.writeUInt32LE(body.length, 0);
      createHash('sha256').update(body).digest().copy(header, 4, 0, 8);
      return Buffer.concat([header, body]);
    };
    const head = '  <labels/>\n';
    const el = (name: string) => `    <domain id="${name}"/>\n`;
    const old = Buffer.concat([
      record({ s: 7, h: head, d: [[0, el('a')]] }),
      record({
        s: 8,
        h: head,
        d: [
          [0, null],
          [1, el('b')],
        ],
      }),
    ]);
    expect(replayJournal(old)).toMatchObject({ records: 2, end: old.length, generation: undefined });
    expect(replayJournal(old).document).toContain(el('b'));
    // A record with a generation behind them is another generation's.
    const mixed = Buffer.concat([old, record({ s: 9, g: 5, h: head, d: [[0, null]] })]);
    expect(replayJournal(mixed).records).toBe(2);
  });

  it('writes records over zeros written ahead, and an emptied journal replays nothing', async () => {
    const { d, path, journal, record } = await openJournal();
    await record();
    await d.ok('admin.vm.feature.Set', 'work', 'second', '1');
    await record();
    const written = await readFile(path);
    // The records grew no file: it was 1 MiB of zeros before the first one.
    expect(written.length).toBe(1024 * 1024);
    expect(written.subarray(journal.bytes).every((b) => b === 0)).toBe(true);
    expect(replayJournal(written).records).toBe(2);

    await journal.clear();
    const cleared = await readFile(path);
    // Only the first header is zeroed: the records behind it are still there, and never replayed.
    expect(cleared.subarray(0, 12).every((b) => b === 0)).toBe(true);
    expect(cleared.subarray(12)).toEqual(written.subarray(12));
    expect(replayJournal(cleared)).toMatchObject({ records: 0, document: null, end: 0 });

    // The next record starts a new generation at the start of the file; the one behind it is not its successor.
    await d.ok('admin.vm.feature.Set', 'work', 'third', '1');
    await record();
    await journal.close();
    const replayed = replayJournal(await readFile(path));
    expect(replayed.records).toBe(1);
    expect(replayed.document).toBe(d.daemon.store.writer.serialize());
  });
});
