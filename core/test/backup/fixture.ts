import { spawnSync } from 'node:child_process';
import { createDecipheriv, createHash, createHmac, scryptSync, timingSafeEqual } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

import { BackupService } from '../../src/backup/service.js';
import type { BackupServiceOptions } from '../../src/backup/service.js';
import { TOKENS } from '../../src/tokens.js';
import type { TestDaemon } from '../support/harness.js';

export interface TarEntry {
  readonly name: string;
  readonly data: Buffer;
}

/** A reader for the tar we write, independent of the writer: ustar plus pax `path`/`size`. */
export function parseTar(buf: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  let off = 0;
  let pax: Record<string, string> = {};
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
    if (parseInt(h.toString('latin1', 148, 155), 8) !== sum) throw new Error(`bad checksum at ${off}`);
    const field = (a: number, b: number) => h.toString('utf8', a, b).replace(/\0.*$/s, '');
    const type = field(156, 157);
    let size = parseInt(field(124, 136), 8);
    if (pax.size) size = Number(pax.size);
    const data = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      pax = {};
      let rest = data.toString('utf8');
      while (rest) {
        const len = parseInt(rest, 10);
        const rec = rest.slice(0, len);
        const [key, value] = rec.slice(rec.indexOf(' ') + 1, -1).split(/=(.*)/s) as [string, string];
        pax[key] = value;
        rest = rest.slice(len);
      }
      continue;
    }
    out.push(
      pax['GNU.sparse.major'] === '1' ? unsparse(pax, data) : { name: pax.path ?? field(0, 100), data },
    );
    pax = {};
  }
  return out;
}

/** A GNU sparse 1.0 member: a decimal map (count, then offset/length pairs), then the data regions. */
function unsparse(pax: Record<string, string>, data: Buffer): TarEntry {
  const lines = data.toString('latin1').split('\n');
  const count = Number(lines[0]);
  const map = Array.from({ length: count }, (_, i) => [Number(lines[1 + 2 * i]), Number(lines[2 + 2 * i])]);
  const mapLen = lines.slice(0, 1 + 2 * count).join('\n').length + 1;
  let pos = Math.ceil(mapLen / 512) * 512;
  const real = Buffer.alloc(Number(pax['GNU.sparse.realsize']));
  for (const [offset, length] of map as [number, number][]) {
    data.copy(real, offset, pos, pos + length);
    pos += length;
  }
  return { name: pax['GNU.sparse.name'] as string, data: real };
}

/** Decrypts the scrypt tool's format, checking the checksum and both HMACs. */
export function decryptScrypt(file: Buffer, passphrase: string | Buffer): Buffer {
  if (file.toString('latin1', 0, 6) !== 'scrypt' || file[6] !== 0) throw new Error('not a scrypt file');
  const logN = file[7] ?? 0;
  const r = file.readUInt32BE(8);
  const p = file.readUInt32BE(12);
  const sha = createHash('sha256').update(file.subarray(0, 48)).digest().subarray(0, 16);
  if (!sha.equals(file.subarray(48, 64))) throw new Error('header checksum');
  const key = scryptSync(passphrase, file.subarray(16, 48), 64, {
    N: 2 ** logN,
    r,
    p,
    maxmem: 256 * 2 ** logN * r * p,
  });
  const hmacKey = key.subarray(32);
  const headerMac = createHmac('sha256', hmacKey).update(file.subarray(0, 64)).digest();
  if (!timingSafeEqual(headerMac, file.subarray(64, 96))) throw new Error('header hmac (wrong passphrase?)');
  const end = file.length - 32;
  const mac = createHmac('sha256', hmacKey).update(file.subarray(0, end)).digest();
  if (!timingSafeEqual(mac, file.subarray(end))) throw new Error('data hmac');
  const d = createDecipheriv('aes-256-ctr', key.subarray(0, 32), Buffer.alloc(16));
  return Buffer.concat([d.update(file.subarray(96, end)), d.final()]);
}

export const hasScryptCli = spawnSync('scrypt', ['--version']).status === 0;

/** `scrypt dec -P` on a file: the real tool's verdict on what we wrote. */
export function scryptCliDecrypt(path: string, passphrase: string): Buffer {
  const r = spawnSync('scrypt', ['dec', '-P', path], { input: `${passphrase}\n`, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`scrypt dec failed: ${r.stderr.toString()}`);
  return r.stdout;
}

/** Joins a file's decrypted chunks (`<name>.NNN.enc`, in order) and unpacks its inner tar. */
export function innerFile(
  entries: readonly TarEntry[],
  name: string,
  passphrase: string,
  backupId: string,
  compressed = true,
): { chunks: string[]; entries: TarEntry[] } {
  const chunks = entries.filter((e) => e.name.startsWith(`${name}.`) && /\.\d{3}\.enc$/.test(e.name));
  const plain = Buffer.concat(
    chunks.map((c) => decryptScrypt(c.data, `${backupId}!${c.name.slice(0, -4)}!${passphrase}`)),
  );
  return { chunks: chunks.map((c) => c.name), entries: parseTar(compressed ? gunzipSync(plain) : plain) };
}

/** A BackupService on a test daemon's app, with a cheap key derivation. */
export function backupService(d: TestDaemon, extra: Partial<BackupServiceOptions> = {}): BackupService {
  return new BackupService({
    app: d.daemon.app,
    storage: d.daemon.container.resolve(TOKENS.Storage),
    xml: d.daemon.store.writer,
    saver: d.daemon.store,
    profileDir: join(d.stateDir, 'backup-profiles'),
    scrypt: { logN: 10, r: 8, p: 1 },
    progressIntervalMs: 0,
    ...extra,
  });
}

export async function writeProfile(d: TestDaemon, id: string, yaml: string): Promise<void> {
  const dir = join(d.stateDir, 'backup-profiles');
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, `${id}.conf`), yaml);
}

/** The header file's fields. */
export function headerFields(entries: readonly TarEntry[]): Record<string, string> {
  const header = entries.find((e) => e.name === 'backup-header');
  if (!header) throw new Error('no backup-header');
  return Object.fromEntries(
    header.data
      .toString('ascii')
      .trimEnd()
      .split('\n')
      .map((l) => l.split('=') as [string, string]),
  );
}
