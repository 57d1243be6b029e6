import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { importStream, readSizeHeader, writeSparse } from '../../src/storage/importer.js';
import { PoolRegistry } from '../../src/storage/pool-registry.js';
import {
  allocated,
  bytesOf,
  GiB,
  MiB,
  owner,
  sha256File,
  sparsePayload,
  tempDir,
  transpileStorage,
} from './helpers.js';

let dir: string;
let reg: PoolRegistry;

beforeEach(async () => {
  dir = await tempDir();
  reg = new PoolRegistry();
  await reg.createPool('file', 'p', { dir_path: dir });
});

afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function privateVolume(size: number) {
  const v = reg.initVolume(owner('vm1'), {
    name: 'private',
    pool: 'p',
    size,
    rw: true,
    saveOnStop: true,
    snapOnStart: false,
  });
  await v.create();
  return v;
}

const img = () => path.join(dir, 'appvms/vm1/private.img');
const importImg = () => path.join(dir, 'appvms/vm1/private-import.img');

describe('volume import', { timeout: 120_000 }, () => {
  it(
    'streams 4 GiB of mostly-zero data to a sparse image with the right hash',
    { timeout: 300_000 },
    async () => {
      const size = 4 * GiB;
      const v = await privateVolume(MiB);
      const payload = sparsePayload(size);
      const rss0 = process.memoryUsage().rss;
      await importStream(v, payload.data, size);
      const rssGrowth = process.memoryUsage().rss - rss0;
      expect(rssGrowth).toBeLessThan(256 * MiB);
      expect(await v.size()).toBe(size);
      expect(v.config().size).toBe(size);
      // Only the random blocks were written: holes everywhere else.
      expect(await allocated(img())).toBeLessThan(payload.result.nonZero + 16 * MiB);
      expect(await sha256File(img())).toBe(payload.result.hash);
      await expect(fs.stat(importImg())).rejects.toThrow();
    },
  );

  it('handles chunks that straddle block boundaries and a non-aligned size', async () => {
    const size = 2 * 4 * MiB + 3 * 65536 + 123;
    const data = Buffer.alloc(size);
    // Non-zero bytes across a block boundary, across a 4 MiB write-stage boundary, and in the tail.
    randomBytes(100).copy(data, 65536 - 50);
    randomBytes(40).copy(data, 4 * MiB - 20);
    randomBytes(10).copy(data, size - 10);
    const v = await privateVolume(size);
    const parts: Buffer[] = [];
    for (let i = 0; i < size; i += 7777) parts.push(data.subarray(i, Math.min(size, i + 7777)));
    await importStream(v, bytesOf(...parts));
    expect((await fs.readFile(img())).equals(data)).toBe(true);
  });

  it('rejects a short payload and keeps the old content', async () => {
    const v = await privateVolume(MiB);
    await fs.writeFile(img(), Buffer.alloc(MiB, 7));
    const before = await sha256File(img());
    await expect(importStream(v, bytesOf(Buffer.alloc(MiB - 1, 1)))).rejects.toThrow(/not enough data/);
    expect(await sha256File(img())).toBe(before);
    await expect(fs.stat(importImg())).rejects.toThrow();
    expect(await v.revisions()).toEqual([]);
  });

  it('rejects a long payload and keeps the old content', async () => {
    const v = await privateVolume(MiB);
    await fs.writeFile(img(), Buffer.alloc(MiB, 7));
    const before = await sha256File(img());
    await expect(importStream(v, bytesOf(Buffer.alloc(MiB, 1), Buffer.from('x')))).rejects.toThrow(
      /too much data/,
    );
    expect(await sha256File(img())).toBe(before);
    await expect(fs.stat(importImg())).rejects.toThrow();
  });

  it('keeps the old content when the client goes away mid-stream', async () => {
    const v = await privateVolume(4 * MiB);
    await fs.writeFile(img(), Buffer.alloc(4 * MiB, 3));
    const before = await sha256File(img());
    const client = new Readable({ read() {} });
    const done = importStream(v, client);
    client.push(Buffer.alloc(MiB, 9));
    client.destroy(new Error('connection reset'));
    await expect(done).rejects.toThrow(/connection reset/);
    expect(await sha256File(img())).toBe(before);
    await expect(fs.stat(importImg())).rejects.toThrow();
  });

  it('ImportWithSize: the declared size becomes the volume size', async () => {
    const v = await privateVolume(MiB);
    const { size, data } = await readSizeHeader(bytesOf(Buffer.from('5\nhe'), Buffer.from('llo')));
    expect(size).toBe(5);
    await importStream(v, data, Number(size));
    expect(await fs.readFile(img(), 'utf8')).toBe('hello');
    expect(await v.size()).toBe(5);
    await expect(readSizeHeader(bytesOf(Buffer.from('12x\n')))).rejects.toThrow(
      'Size of new data contains non ASCII digits',
    );
    await expect(readSizeHeader(bytesOf(Buffer.from('1'.repeat(30))))).rejects.toThrow(/Invalid size/);
    await expect(readSizeHeader(bytesOf(Buffer.from('007\n')))).rejects.toThrow(
      'Size of new data contains spurious leading zeros',
    );
  });

  it('Clear replaces the data with zeros of the same size', async () => {
    const v = await privateVolume(MiB);
    await fs.writeFile(img(), Buffer.alloc(MiB, 5));
    await reg.clear(v);
    expect((await fs.readFile(img())).equals(Buffer.alloc(MiB))).toBe(true);
    expect(await v.size()).toBe(MiB);
  });

  it('refuses imports into a running or non save_on_stop volume', async () => {
    const v = await privateVolume(MiB);
    await v.start();
    await expect(importStream(v, bytesOf(Buffer.alloc(MiB)))).rejects.toThrow(/in use/);
    await v.stop();
    // ...and a start while an import is under way.
    await v.importBegin();
    await expect(v.start()).rejects.toThrow(/Import operation in progress/);
    await v.importEnd(false);
    await v.start();
    await v.stop();
    const vol = reg.initVolume(owner('vm1'), {
      name: 'volatile',
      pool: 'p',
      size: MiB,
      rw: true,
      saveOnStop: false,
      snapOnStart: false,
    });
    await expect(vol.importBegin()).rejects.toThrow(/save_on_stop=False volume/);
  });

  it('writeSparse leaves holes for zero blocks', async () => {
    const p = path.join(dir, 'raw.img');
    await fs.writeFile(p, '');
    const size = 64 * MiB;
    const zeros = Buffer.alloc(MiB);
    async function* gen() {
      for (let i = 0; i < 64; i++) yield i === 10 ? Buffer.alloc(MiB, 1) : zeros;
    }
    await writeSparse(p, gen(), size);
    expect((await fs.stat(p)).size).toBe(size);
    expect(await allocated(p)).toBeLessThanOrEqual(2 * MiB);
  });

  it('SIGKILL of the importing process mid-way keeps the old content', async () => {
    const v = await privateVolume(256 * MiB);
    await fs.writeFile(img(), randomBytes(256 * MiB));
    const before = await sha256File(img());

    const js = await transpileStorage(path.join(dir, 'js'));
    const child = path.join(js, 'child.mjs');
    await fs.writeFile(
      child,
      `import { PoolRegistry } from './storage/pool-registry.js';
import { importStream } from './storage/importer.js';
const reg = new PoolRegistry();
reg.loadPool({ name: 'p', driver: 'file', dir_path: process.argv[2] });
const v = reg.initVolume({ name: 'vm1', dirPrefix: 'appvms' }, { name: 'private', pool: 'p', size: 256 * 1048576, rw: true, saveOnStop: true, snapOnStart: false });
async function* slow() {
  for (let i = 0; ; i++) {
    yield Buffer.alloc(1048576, 0xab);
    if (i === 32) process.stdout.write('halfway\\n');
    if (i >= 32) await new Promise((r) => setTimeout(r, 20));
  }
}
await importStream(v, slow());
`,
    );
    const proc = spawn(process.execPath, [child, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => d.toString().includes('halfway') && resolve());
      proc.on('exit', (code) => reject(new Error(`child exited early: ${code}`)));
    });
    // The import really was in progress: its scratch file holds data.
    expect(await allocated(importImg())).toBeGreaterThan(16 * MiB);
    const exited = new Promise((r) => proc.on('exit', (_c, sig) => r(sig)));
    proc.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');

    expect(await sha256File(img())).toBe(before);
    // The next daemon cleans the leftover up and can import again.
    await importStream(v, bytesOf(Buffer.alloc(256 * MiB, 1)));
    // Upstream's file driver keeps no revision of imported data, only of a VM's committed changes.
    expect((await fs.readdir(path.dirname(img()))).sort()).toEqual(['private.img']);
  });
});
