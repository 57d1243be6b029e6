import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Duplex, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

import { QubesException } from '../model/errors.js';
import { ScryptFileWriter } from './scrypt-file.js';
import type { ScryptParams } from './scrypt-file.js';
import { innerTar } from './inner-tar.js';
import type { FileProgress, InnerSource } from './inner-tar.js';
import { TAR_END, fileHeader, padding } from './tar.js';

const HEADER_FILENAME = 'backup-header';

export interface ArchiveOptions {
  readonly passphrase: Buffer;
  /** Part of every chunk's key: binds the chunks to this one backup. */
  readonly backupId: string;
  /** false, or the compression program's name ('gzip' runs in-process). */
  readonly compression: false | string;
  readonly scrypt: ScryptParams;
  /** Upstream splits each inner archive into encrypted chunks of this many bytes. */
  readonly chunkSize: number;
  /** Where chunks are written before they go into the archive. */
  readonly workDir: string;
  readonly signal: AbortSignal;
}

const READ_SIZE = 1024 * 1024;

/**
 * A backup archive in upstream's format 4, written to `out`:
 *
 *   outer tar (uncompressed): backup-header, backup-header.hmac, then for every
 *   file `<name>.NNN.enc` chunks, qubes.xml first.
 *
 * Each file becomes an inner tar holding it as `<name>`, compressed, cut into
 * chunks, and each chunk scrypt-encrypted with the passphrase prefixed by
 * `<backup id>!<name>.NNN!` (the header's hmac file: `backup-header!`), so a
 * chunk cannot be swapped for another one of this or another backup.
 */
export class BackupArchive {
  private workFiles = 0;

  constructor(
    private readonly out: FileHandle,
    private readonly opts: ArchiveOptions,
  ) {}

  /** backup-header as plain text, then its scrypt-wrapped copy, which the restore compares it with. */
  async addHeader(text: string): Promise<void> {
    const data = Buffer.from(text, 'ascii');
    await this.append(HEADER_FILENAME, data.length, Readable.from([data]));
    const file = await this.workFile(
      Buffer.concat([Buffer.from(`${HEADER_FILENAME}!`), this.opts.passphrase]),
    );
    try {
      await file.writer.write(data);
    } finally {
      await file.writer.close();
    }
    await this.appendFile(`${HEADER_FILENAME}.hmac`, file.path);
  }

  /**
   * One file as an inner archive in chunks. `progress` hears the bytes read
   * from the source and its total.
   */
  async addFile(name: string, source: InnerSource, progress: FileProgress = () => undefined): Promise<void> {
    const chunks = new ChunkSink(this, name);
    const tar = Readable.from(innerTar(name, source, this.opts.signal, progress));
    const compressor = this.compressor();
    const sink = async (input: AsyncIterable<Buffer>): Promise<void> => {
      for await (const buf of input) await chunks.write(buf);
      await chunks.end();
    };
    const { signal } = this.opts;
    try {
      if (compressor) {
        await Promise.all([pipeline(tar, compressor.stream, sink, { signal }), compressor.exited]);
      } else {
        await pipeline(tar, sink, { signal });
      }
    } catch (e) {
      await chunks.abandon();
      throw e;
    }
  }

  async finish(): Promise<void> {
    await this.out.write(TAR_END);
  }

  private compressor(): { stream: Duplex; exited: Promise<void> } | undefined {
    const filter = this.opts.compression;
    if (filter === false) return undefined;
    if (filter === 'gzip') return { stream: createGzip(), exited: Promise.resolve() };
    // Any other filter is a program from stdin to stdout, as upstream's tar runs it.
    const child = spawn(filter, [], { stdio: ['pipe', 'pipe', 'ignore'], signal: this.opts.signal });
    const exited = new Promise<void>((resolve, reject) => {
      child.on('error', (e) =>
        reject(
          e.name === 'AbortError'
            ? e
            : new QubesException(`Compression filter ${filter} failed: ${e.message}`),
        ),
      );
      child.on('close', (code) =>
        code === 0
          ? resolve()
          : reject(new QubesException(`Compression filter ${filter} exited with ${code}`)),
      );
    });
    return { stream: Duplex.from({ writable: child.stdin, readable: child.stdout }), exited };
  }

  /** A new scrypt file in the work dir (the job removes the dir, whatever is left in it). */
  async workFile(passphrase: Buffer): Promise<WorkFile> {
    const path = join(this.opts.workDir, `part-${this.workFiles++}`);
    return { path, writer: await ScryptFileWriter.create(path, passphrase, this.opts.scrypt) };
  }

  /** Moves a finished work file into the outer archive. */
  async appendFile(name: string, path: string): Promise<void> {
    const { size } = await stat(path);
    await this.append(name, size, createReadStream(path, { highWaterMark: READ_SIZE }));
    await unlink(path);
  }

  private async append(name: string, size: number, data: Readable): Promise<void> {
    await this.out.write(fileHeader(name, size, Math.floor(Date.now() / 1000)));
    for await (const buf of data as AsyncIterable<Buffer>) {
      this.opts.signal.throwIfAborted();
      await this.out.write(buf);
    }
    await this.out.write(padding(size));
  }

  get chunking(): Pick<ArchiveOptions, 'passphrase' | 'backupId' | 'chunkSize'> {
    return this.opts;
  }
}

interface WorkFile {
  readonly path: string;
  readonly writer: ScryptFileWriter;
}

/** Cuts one inner archive into `<name>.NNN` chunks of at most chunkSize bytes, each encrypted. */
class ChunkSink {
  private index = 0;
  private current: (WorkFile & { readonly name: string }) | null = null;

  constructor(
    private readonly archive: BackupArchive,
    private readonly name: string,
  ) {}

  async write(buf: Buffer): Promise<void> {
    const { chunkSize } = this.archive.chunking;
    let rest = buf;
    while (rest.length > 0) {
      const chunk = this.current ?? (await this.open());
      const take = Math.min(rest.length, chunkSize - chunk.writer.size);
      await chunk.writer.write(rest.subarray(0, take));
      rest = rest.subarray(take);
      if (chunk.writer.size === chunkSize) await this.close();
    }
  }

  /** Finishes the last chunk; an empty input still gets its `.000` chunk. */
  async end(): Promise<void> {
    if (this.index === 0) await this.open();
    await this.close();
  }

  async abandon(): Promise<void> {
    await this.current?.writer.abandon();
    this.current = null;
  }

  private async open(): Promise<WorkFile> {
    const { passphrase, backupId } = this.archive.chunking;
    const name = `${this.name}.${String(this.index++).padStart(3, '0')}`;
    const file = await this.archive.workFile(
      Buffer.concat([Buffer.from(`${backupId}!${name}!`), passphrase]),
    );
    this.current = { ...file, name };
    return file;
  }

  private async close(): Promise<void> {
    const chunk = this.current;
    if (!chunk) return;
    this.current = null;
    await chunk.writer.close();
    await this.archive.appendFile(`${chunk.name}.enc`, chunk.path);
  }
}
