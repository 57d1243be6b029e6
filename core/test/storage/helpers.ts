import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';

import type { VolumeOwner } from '../../src/storage/driver.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export async function tempDir(prefix = 'odyssey-storage-', parent = os.tmpdir()): Promise<string> {
  return fs.mkdtemp(path.join(parent, prefix));
}

export function owner(name: string, dirPrefix: VolumeOwner['dirPrefix'] = 'appvms'): VolumeOwner {
  return { name, dirPrefix };
}

export async function sha256File(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(p, { highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function allocated(p: string): Promise<number> {
  return (await fs.stat(p)).blocks * 512;
}

/**
 * A deterministic payload of `size` bytes, mostly zeros with a random 64 KiB
 * block every `every` bytes; `hash` is filled in once the generator is drained.
 */
export function sparsePayload(
  size: number,
  every = 256 * MiB,
  chunk = MiB,
): { data: AsyncGenerator<Buffer>; result: { hash: string; nonZero: number } } {
  const result = { hash: '', nonZero: 0 };
  const zeros = Buffer.alloc(chunk);
  async function* gen(): AsyncGenerator<Buffer> {
    const h = createHash('sha256');
    for (let pos = 0; pos < size; pos += chunk) {
      const len = Math.min(chunk, size - pos);
      let buf = zeros.subarray(0, len);
      if (pos % every === 0) {
        buf = Buffer.alloc(len);
        randomBytes(64 * 1024).copy(buf, 4096);
        result.nonZero += 64 * 1024;
      }
      h.update(buf);
      yield buf;
    }
    result.hash = h.digest('hex');
  }
  return { data: gen(), result };
}

export async function* bytesOf(...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
}

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: 'pipe' });
}

/**
 * Mounts a fresh XFS (reflink=1) image on a loop device. Returns undefined,
 * with the reason, when the machine cannot (no root, no loop devices, no mkfs.xfs).
 */
export async function mountReflinkFs(
  sizeBytes = 2 * GiB,
): Promise<{ dir: string; cleanup: () => Promise<void> } | string> {
  const base = await tempDir('odyssey-reflink-');
  const img = path.join(base, 'fs.img');
  const dir = path.join(base, 'mnt');
  try {
    await fs.mkdir(dir);
    const fh = await fs.open(img, 'w');
    await fh.truncate(sizeBytes);
    await fh.close();
    sh('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
    sh('mount', ['-o', 'loop', img, dir]);
  } catch (err) {
    await fs.rm(base, { recursive: true, force: true });
    return `cannot mount a reflink filesystem here: ${(err as Error).message.split('\n')[0]}`;
  }
  return {
    dir,
    cleanup: async () => {
      sh('umount', [dir]);
      await fs.rm(base, { recursive: true, force: true });
    },
  };
}

const coreSrc = fileURLToPath(new URL('../../src/', import.meta.url));

/**
 * Emits the storage sources (and the errors they import) as plain ESM under
 * `outDir`, for child processes that plain `node` must run.
 */
export async function transpileStorage(outDir: string): Promise<string> {
  // What storage imports from outside its folder.
  const files = ['model/errors.ts', 'model/validate.ts', 'run-command.ts'];
  for (const e of await fs.readdir(path.join(coreSrc, 'storage'), { recursive: true })) {
    if (e.endsWith('.ts')) files.push(path.join('storage', e));
  }
  for (const rel of files) {
    const src = await fs.readFile(path.join(coreSrc, rel), 'utf8');
    const out = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    const dst = path.join(outDir, rel.replace(/\.ts$/, '.js'));
    await fs.mkdir(path.dirname(dst), { recursive: true });
    await fs.writeFile(dst, out.outputText);
  }
  await fs.writeFile(path.join(outDir, 'package.json'), '{"type":"module"}\n');
  return outDir;
}
