import { createHash, randomInt } from 'node:crypto';
import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';

import type { Vm } from '../model/vm.js';
import { qubesDocument } from './qubes-xml.js';

/**
 * The write-ahead journal of qubes.xml: each acknowledged save is one record
 * appended with one synchronised write (O_DSYNC), instead of a rewritten qubes.xml with a file
 * fsync, a rename and a directory fsync. A record holds the document's head
 * (labels, pools, global properties) and the ordered list of domains, each
 * with its element only if it differs from the previous record's, so replay
 * rebuilds exactly the bytes a direct save would have written: removals are
 * domains missing from the list, everything global is in every record.
 *
 * Record: u32 LE payload length, 8 bytes of the payload's SHA-256, payload
 * (JSON `{s, g, h, d}`: sequence number, generation, head, `[key, element | null]`).
 * A torn or corrupt tail fails the length, checksum, shape, generation or sequence
 * check, and replay stops before it.
 *
 * The file is written ahead with zeros (RESERVE bytes at a time) and records overwrite them: an
 * O_DSYNC write that does not grow the file has no size to commit to the filesystem's own
 * journal, which measured 30-40 % less CPU per record (bench/README.md). Emptying the journal
 * (after a checkpoint) zeroes its first header and starts a new generation, a random number every
 * record of it carries, so the older records still in the file behind a shorter one are never taken
 * for its successors; the first record of a generation holds every element.
 */
const HEADER = 12;
const SUM = 8;
/** Bounds a record read back: a length beyond it is a torn or foreign tail. */
const MAX_RECORD = 256 * 1024 * 1024;
/** Zeros written ahead of the records at a time. */
const RESERVE = 1024 * 1024;
/** A journal grown past this by a burst of large records is cut back when emptied. */
const KEEP = 4 * RESERVE;
const ZEROS = Buffer.alloc(RESERVE);

interface Payload {
  readonly s: number;
  /** Absent in records of builds before generations: those are one generation of their own. */
  readonly g?: number;
  readonly h: string;
  readonly d: readonly (readonly [number, string | null])[];
}

function checksum(payload: Buffer): Buffer {
  return createHash('sha256').update(payload).digest().subarray(0, SUM);
}

function isPayload(v: unknown): v is Payload {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Record<string, unknown>;
  return (
    Number.isSafeInteger(p.s) &&
    (p.g === undefined || Number.isSafeInteger(p.g)) &&
    typeof p.h === 'string' &&
    Array.isArray(p.d) &&
    p.d.every(
      (e: unknown) =>
        Array.isArray(e) &&
        e.length === 2 &&
        Number.isSafeInteger(e[0]) &&
        (typeof e[1] === 'string' || e[1] === null),
    )
  );
}

/** What replay found: the document of the last whole record, and where the next record goes. */
export interface Replayed {
  readonly document: string | null;
  readonly records: number;
  readonly nextSeq: number;
  /** The offset just past the last whole record. */
  readonly end: number;
  /** The last whole record's generation. */
  readonly generation: number | undefined;
}

/** 48 random bits: two generations of one journal never share one. */
function newGeneration(): number {
  return randomInt(2 ** 47) * 2 + randomInt(2);
}

/** Reads the whole records of a journal's bytes, stopping at the first torn or inconsistent one. */
export function replayJournal(bytes: Buffer): Replayed {
  let pos = 0;
  let seq: number | null = null;
  let generation: number | undefined;
  let records = 0;
  let document: string | null = null;
  let elements = new Map<number, string>();
  while (bytes.length - pos >= HEADER) {
    const len = bytes.readUInt32LE(pos);
    if (len > MAX_RECORD || len > bytes.length - pos - HEADER) break;
    const payload = bytes.subarray(pos + HEADER, pos + HEADER + len);
    if (!checksum(payload).equals(bytes.subarray(pos + 4, pos + HEADER))) break;
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload.toString('utf8'));
    } catch {
      break;
    }
    if (!isPayload(parsed) || (seq !== null && (parsed.s !== seq + 1 || parsed.g !== generation))) break;
    const next = new Map<number, string>();
    let whole = true;
    for (const [key, xml] of parsed.d) {
      const el = xml ?? elements.get(key);
      if (el === undefined || next.has(key)) {
        whole = false;
        break;
      }
      next.set(key, el);
    }
    if (!whole) break;
    elements = next;
    seq = parsed.s;
    generation = parsed.g;
    records++;
    document = qubesDocument(parsed.h, [...next.values()]);
    pos += HEADER + len;
  }
  return { document, records, nextSeq: seq === null ? 0 : seq + 1, end: pos, generation };
}

async function writeAll(fh: FileHandle, bytes: Buffer, position: number): Promise<void> {
  for (let done = 0; done < bytes.length;)
    done += (await fh.write(bytes, done, bytes.length - done, position + done)).bytesWritten;
}

/** The open journal file; appends are positioned, one at a time (StateStore orders them). */
export class Journal {
  private fh: FileHandle | null = null;
  /** Where the next record goes: the end of this generation's records. */
  private size = 0;
  /** The file's length: zeros (or an older generation's records) from `size` up to it. */
  private allocated = 0;
  /** Cleared when the zeros were refused: until the journal is emptied, records extend the file. */
  private reserving = true;
  private seq = 0;
  private generation: number | undefined = newGeneration();
  private keys = new WeakMap<Vm, number>();
  private nextKey = 0;
  /** Each domain's element as the last durable record holds it: a later record repeats only the changed ones. */
  private recorded = new Map<Vm, string>();
  /** Records since the journal was last emptied. */
  records = 0;

  constructor(readonly path: string) {}

  get bytes(): number {
    return this.size;
  }

  /** Opens (creating) the journal and replays it; the caller checkpoints a non-null document, then clears it. */
  async open(): Promise<Replayed> {
    let bytes: Buffer;
    let created = false;
    try {
      bytes = await readFile(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      bytes = Buffer.alloc(0);
      created = true;
    }
    const replayed = replayJournal(bytes);
    // O_DSYNC: a write returns once its data is as durable as after an fdatasync, so an append is
    // one thread-pool round trip instead of two (write, then fdatasync), each followed by an event-loop wake-up.
    this.fh = await open(this.path, constants.O_RDWR | constants.O_CREAT | constants.O_DSYNC, 0o660);
    this.size = replayed.end;
    this.allocated = bytes.length;
    // A torn record behind the last whole one is overwritten by the next record, which continues the generation.
    this.generation = replayed.records > 0 ? replayed.generation : newGeneration();
    this.seq = replayed.nextSeq;
    this.records = replayed.records;
    if (created) {
      // The file's directory entry must be durable before a record in it is acknowledged.
      const dh = await open(dirname(this.path), 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    }
    return replayed;
  }

  /** Appends the document's state durably; on failure nothing is counted and the next record overwrites the tail. */
  async append(head: string, domains: readonly (readonly [Vm, string])[]): Promise<void> {
    const fh = this.handle();
    const d = domains.map(([vm, xml]) => [this.key(vm), this.recorded.get(vm) === xml ? null : xml] as const);
    const payload = Buffer.from(JSON.stringify({ s: this.seq, g: this.generation, h: head, d }), 'utf8');
    const record = Buffer.allocUnsafe(HEADER + payload.length);
    record.writeUInt32LE(payload.length, 0);
    checksum(payload).copy(record, 4);
    payload.copy(record, HEADER);
    await this.reserve(fh, this.size + record.length);
    // A nearly full disk can take part of a record: write the rest, or fail on ENOSPC. Each write is
    // synchronised (O_DSYNC), so the record is durable when the last one returns.
    await writeAll(fh, record, this.size);
    this.size += record.length;
    this.allocated = Math.max(this.allocated, this.size);
    this.seq++;
    this.records++;
    this.recorded = new Map(domains);
  }

  /**
   * Empties the journal once qubes.xml holds its state: its first header is zeroed (the file is
   * cut back if a burst grew it past KEEP), and the next record starts a new generation holding every element.
   */
  async clear(): Promise<void> {
    const fh = this.handle();
    if (this.allocated > KEEP) {
      await fh.truncate(0);
      await fh.sync();
      this.allocated = 0;
    } else if (this.allocated > 0) {
      // Even with no record counted: one whose write failed may have reached the disk whole.
      await writeAll(fh, ZEROS.subarray(0, HEADER), 0);
    }
    this.reserving = true;
    this.size = 0;
    this.records = 0;
    this.generation = newGeneration();
    this.recorded = new Map();
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
  }

  private handle(): FileHandle {
    if (!this.fh) throw new Error(`journal ${this.path} is not open`);
    return this.fh;
  }

  /**
   * Zeros up to past `end`, so the record that ends there grows no file. A disk or file size limit
   * that refuses them is no error: the record then extends the file itself, and fails there if it must.
   */
  private async reserve(fh: FileHandle, end: number): Promise<void> {
    if (end <= this.allocated || !this.reserving) return;
    const to = Math.ceil(end / RESERVE) * RESERVE;
    try {
      for (let at = this.allocated; at < to; at += RESERVE) {
        const n = Math.min(RESERVE, to - at);
        await writeAll(fh, ZEROS.subarray(0, n), at);
        this.allocated = at + n;
      }
    } catch {
      // What was written of the zeros lies past `allocated`, which stays a bound from below.
      this.reserving = false;
    }
  }

  private key(vm: Vm): number {
    let k = this.keys.get(vm);
    if (k === undefined) {
      k = this.nextKey++;
      this.keys.set(vm, k);
    }
    return k;
  }
}
