import { XdrError, type XdrReader, type XdrWriter } from '../xdr.js';

/** libvirt's string limit (VIR_NET_MESSAGE_STRING_MAX); longer means a corrupt message. */
export const STRING_MAX = 4 * 1024 * 1024;
/** Bounds for the list procedures (REMOTE_DOMAIN_LIST_MAX and friends). */
export const LIST_MAX = 16384;

/** A domain as the daemon identifies it. `id` is -1 while the domain is not running. */
export interface Domain {
  name: string;
  uuid: string;
  id: number;
}

export interface StoragePool {
  name: string;
  uuid: string;
}

export interface StorageVol {
  /** Name of the pool holding the volume. */
  pool: string;
  name: string;
  /** Unique key, for a file volume its path. */
  key: string;
}

export function uuidToBytes(uuid: string): Buffer {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new XdrError(`invalid UUID: ${uuid}`);
  return Buffer.from(hex, 'hex');
}

export function uuidFromBytes(bytes: Buffer): string {
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export const writeUuid = (w: XdrWriter, uuid: string): void => void w.fixedOpaque(uuidToBytes(uuid), 16);
export const readUuid = (r: XdrReader): string => uuidFromBytes(r.fixedOpaque(16));
export const readString = (r: XdrReader): string => r.string(STRING_MAX);

export function writeDomain(w: XdrWriter, d: Domain): void {
  w.string(d.name);
  writeUuid(w, d.uuid);
  w.int(d.id);
}

export function readDomain(r: XdrReader): Domain {
  return { name: readString(r), uuid: readUuid(r), id: r.int() };
}

export function writePool(w: XdrWriter, p: StoragePool): void {
  w.string(p.name);
  writeUuid(w, p.uuid);
}

export function readPool(r: XdrReader): StoragePool {
  return { name: readString(r), uuid: readUuid(r) };
}

export function writeVol(w: XdrWriter, v: StorageVol): void {
  w.string(v.pool);
  w.string(v.name);
  w.string(v.key);
}

export function readVol(r: XdrReader): StorageVol {
  return { pool: readString(r), name: readString(r), key: readString(r) };
}

/** `remote_string`: an optional string. */
export const writeOptString = (w: XdrWriter, s: string | null | undefined): void =>
  void w.optional(s, (x, v) => x.string(v));

/**
 * Several replies return a bounded list followed by the total count (`ret`); the count is
 * only informative when the list was capped, so callers get the list.
 */
export function readList<T>(r: XdrReader, read: (r: XdrReader) => T): T[] {
  const items = r.array(read, LIST_MAX);
  r.uint();
  return items;
}

/** Fixed arrays of C `char` are encoded one XDR int per character (`char model[32]`). */
export function readCharArray(r: XdrReader, length: number): string {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = r.int() & 0xff;
  const nul = bytes.indexOf(0);
  return bytes.toString('utf8', 0, nul === -1 ? length : nul);
}
