/**
 * Plain POSIX tar (ustar) headers, enough for both layers of a Qubes backup:
 * regular files only. A pax extended header carries what ustar cannot hold
 * (names over 100 bytes, sizes of 8 GiB and more, sparse maps), as
 * `tar --posix` would.
 */
export const BLOCK = 512;

/** Two zero blocks end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

const MAX_OCTAL_SIZE = 0o77777777777;

function octal(buf: Buffer, offset: number, width: number, value: number): void {
  buf.write(`${value.toString(8).padStart(width - 1, '0')}\0`, offset, width, 'latin1');
}

function ustarBlock(name: string, size: number, mtime: number, type: '0' | 'x'): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 100, 'utf8');
  octal(h, 100, 8, 0o644);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, mtime);
  h.write(type, 156, 1, 'latin1');
  h.write('ustar\0' + '00', 257, 8, 'latin1');
  // `tar -tvv` prints owner/group, which upstream's restore parses for the file size.
  h.write('root', 265, 32, 'latin1');
  h.write('root', 297, 32, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/** One `len key=value\n` pax record; its length counts its own digits. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = Buffer.byteLength(body);
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len}${body}`;
}

/** Zero bytes that bring `size` up to a whole block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/**
 * The header block(s) of a regular file of `size` bytes; data and
 * `padding(size)` follow. `pax` adds extended header records (GNU sparse).
 */
export function fileHeader(
  name: string,
  size: number,
  mtime: number,
  pax: Record<string, string> = {},
): Buffer {
  const records = { ...pax };
  if (Buffer.byteLength(name) > 100) records.path = name;
  if (size > MAX_OCTAL_SIZE) records.size = String(size);
  // Names here are ASCII (qid directories, volume names), so slicing by characters is by bytes.
  const short = name.slice(0, 100);
  if (Object.keys(records).length === 0) return ustarBlock(short, size, mtime, '0');
  const data = Buffer.from(
    Object.entries(records)
      .map(([k, v]) => paxRecord(k, v))
      .join(''),
    'utf8',
  );
  return Buffer.concat([
    ustarBlock(`PaxHeaders/${short}`.slice(0, 100), data.length, mtime, 'x'),
    data,
    padding(data.length),
    ustarBlock(short, size > MAX_OCTAL_SIZE ? 0 : size, mtime, '0'),
  ]);
}
