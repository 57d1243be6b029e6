import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';

import { QubesException } from '../model/errors.js';
import { BLOCK, TAR_END, fileHeader, padding } from './tar.js';

/** What to put in an inner archive: a file's path, bytes, or nothing (the empty placeholder). */
export type InnerSource = string | Buffer | null;

/** `progress(done, total)`: bytes of the source handled so far, of its size. */
export type FileProgress = (done: number, total: number) => void;

const READ_SIZE = 1024 * 1024;
const ZERO = Buffer.alloc(READ_SIZE);

/** [offset, length] of the data in a file, the rest being zeros; the last entry reaches the end. */
type SparseMap = [number, number][];

/**
 * Where a file holds data, at tar's 512-byte granularity (what upstream's
 * qubes.tarwriter computes), so the archive skips the zeros of a mostly
 * empty disk image instead of compressing gigabytes of them.
 */
async function sparseMap(path: string, size: number, signal: AbortSignal): Promise<SparseMap> {
  const map: SparseMap = [];
  const buf = Buffer.alloc(READ_SIZE);
  const fh = await open(path, 'r');
  let start = -1;
  let pos = 0;
  try {
    while (pos < size) {
      signal.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, Math.min(READ_SIZE, size - pos), pos);
      if (bytesRead === 0) break;
      if (buf.compare(ZERO, 0, bytesRead, 0, bytesRead) === 0) {
        if (start >= 0) map.push([start, pos - start]);
        start = -1;
      } else {
        for (let off = 0; off < bytesRead; off += BLOCK) {
          const end = Math.min(off + BLOCK, bytesRead);
          const zero = buf.compare(ZERO, 0, end - off, off, end) === 0;
          if (zero && start >= 0) {
            map.push([start, pos + off - start]);
            start = -1;
          } else if (!zero && start < 0) {
            start = pos + off;
          }
        }
      }
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  map.push(start >= 0 ? [start, pos - start] : [pos, 0]);
  return map;
}

async function* readRange(path: string, start: number, length: number): AsyncGenerator<Buffer> {
  if (length === 0) return;
  let read = 0;
  for await (const buf of createReadStream(path, {
    start,
    end: start + length - 1,
    highWaterMark: READ_SIZE,
  })) {
    read += (buf as Buffer).length;
    yield buf as Buffer;
  }
  if (read !== length)
    throw new QubesException(`Failed to archive ${path} file: it changed while being read`);
}

/**
 * The inner tar of one file: header, data, padding, end blocks. A file with
 * holes is written in the GNU sparse 1.0 pax format, as upstream's
 * qubes.tarwriter writes volumes: a map of the data regions, then only those.
 */
export async function* innerTar(
  name: string,
  source: InnerSource,
  signal: AbortSignal,
  progress: FileProgress,
): AsyncGenerator<Buffer> {
  if (source === null || Buffer.isBuffer(source)) {
    const data = source ?? Buffer.alloc(0);
    yield fileHeader(name, data.length, Math.floor(Date.now() / 1000));
    if (data.length > 0) yield data;
    progress(data.length, data.length);
    yield Buffer.concat([padding(data.length), TAR_END]);
    return;
  }
  const st = await stat(source);
  const mtime = Math.floor(st.mtimeMs / 1000);
  const map = await sparseMap(source, st.size, signal);
  const dense = map.length === 1 && map[0]?.[0] === 0;
  if (dense) {
    yield fileHeader(name, st.size, mtime);
    let done = 0;
    for await (const buf of readRange(source, 0, st.size)) {
      done += buf.length;
      progress(done, st.size);
      yield buf;
    }
    yield Buffer.concat([padding(st.size), TAR_END]);
    return;
  }
  const text = `${map.length}\n${map.map(([o, l]) => `${o}\n${l}\n`).join('')}`;
  const mapBlock = Buffer.concat([Buffer.from(text, 'ascii'), padding(text.length)]);
  const compact = mapBlock.length + map.reduce((sum, [, l]) => sum + l, 0);
  yield fileHeader(`${dirname(name)}/GNUSparseFile.${process.pid}/${basename(name)}`, compact, mtime, {
    'GNU.sparse.major': '1',
    'GNU.sparse.minor': '0',
    'GNU.sparse.name': name,
    'GNU.sparse.realsize': String(st.size),
  });
  yield mapBlock;
  for (const [offset, length] of map) {
    let done = offset;
    for await (const buf of readRange(source, offset, length)) {
      done += buf.length;
      progress(done, st.size);
      yield buf;
    }
  }
  progress(st.size, st.size);
  yield Buffer.concat([padding(compact), TAR_END]);
}
