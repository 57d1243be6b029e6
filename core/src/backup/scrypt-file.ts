import { createCipheriv, createHash, createHmac, randomBytes, scrypt } from 'node:crypto';
import type { Cipher, Hmac } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/**
 * The scrypt tool's encrypted file format (version 0), which a Qubes backup
 * wraps every file in: `scrypt dec` on the restoring side both decrypts and
 * verifies it, so writing it ourselves needs no scrypt binary here.
 *
 *   0   "scrypt", version byte 0
 *   7   log2(N); 8 r (u32 BE); 12 p (u32 BE); 16 salt (32 bytes)
 *   48  first 16 bytes of SHA-256(bytes 0..47)
 *   64  HMAC-SHA-256(bytes 0..63)
 *   96  data XOR AES-256-CTR (nonce 0)
 *   end HMAC-SHA-256(everything before it)
 *
 * The 64-byte scrypt output: bytes 0..31 are the AES key, 32..63 the HMAC key.
 */
export interface ScryptParams {
  readonly logN: number;
  readonly r: number;
  readonly p: number;
}

export const SCRYPT_HEADER_SIZE = 96;
export const SCRYPT_TRAILER_SIZE = 32;

function deriveKey(passphrase: Buffer, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.logN;
  // Node refuses a derivation above maxmem (32 MiB by default); scrypt needs 128·N·r·p bytes.
  const maxmem = 128 * N * params.r * params.p + 32 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, 64, { N, r: params.r, p: params.p, maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** Writes one scrypt-format file, data streamed through `write` and never held whole. */
export class ScryptFileWriter {
  private dataBytes = 0;

  private constructor(
    private readonly fh: FileHandle,
    private readonly cipher: Cipher,
    private readonly mac: Hmac,
  ) {}

  static async create(path: string, passphrase: Buffer, params: ScryptParams): Promise<ScryptFileWriter> {
    const salt = randomBytes(32);
    const key = await deriveKey(passphrase, salt, params);
    const header = Buffer.alloc(SCRYPT_HEADER_SIZE);
    header.write('scrypt', 0, 'latin1');
    header[6] = 0;
    header[7] = params.logN;
    header.writeUInt32BE(params.r, 8);
    header.writeUInt32BE(params.p, 12);
    salt.copy(header, 16);
    createHash('sha256').update(header.subarray(0, 48)).digest().copy(header, 48, 0, 16);
    const hmacKey = key.subarray(32, 64);
    createHmac('sha256', hmacKey).update(header.subarray(0, 64)).digest().copy(header, 64);
    const cipher = createCipheriv('aes-256-ctr', key.subarray(0, 32), Buffer.alloc(16));
    const mac = createHmac('sha256', hmacKey).update(header);
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.write(header);
    } catch (e) {
      await fh.close();
      throw e;
    }
    return new ScryptFileWriter(fh, cipher, mac);
  }

  /** Plaintext bytes written so far. */
  get size(): number {
    return this.dataBytes;
  }

  async write(data: Buffer): Promise<void> {
    const out = this.cipher.update(data);
    this.mac.update(out);
    this.dataBytes += data.length;
    await this.fh.write(out);
  }

  /** Appends the trailing HMAC and closes the file. */
  async close(): Promise<void> {
    try {
      const tail = this.cipher.final();
      this.mac.update(tail);
      await this.fh.write(Buffer.concat([tail, this.mac.digest()]));
    } finally {
      await this.fh.close();
    }
  }

  /** Closes without finishing (the caller removes the file). */
  async abandon(): Promise<void> {
    await this.fh.close();
  }
}
