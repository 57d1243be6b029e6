import { VchanError } from '@odyssey/hal';
import { declareOpaque, importKoffi } from './koffi.js';

/** The xenstore operations the transport needs; relative paths are under this domain's /local/domain/<id>. */
export interface Xenstore {
  /** The value at `path`, or undefined if absent. */
  read(path: string): Promise<string | undefined>;
  /** Sets `path` to `value`, making it (and its parents) if absent. */
  write(path: string, value: string): Promise<void>;
  /** Removes `path` and what is under it; absent is fine. */
  remove(path: string): Promise<void>;
}

const XBT_NULL = 0;

type XsRm = {
  async(
    handle: unknown,
    transaction: number,
    path: string,
    done: (error: unknown, ok: boolean) => void,
  ): void;
};

type XsWrite = {
  async(
    handle: unknown,
    transaction: number,
    path: string,
    data: Buffer,
    length: number,
    done: (error: unknown, ok: boolean) => void,
  ): void;
};

type XsRead = {
  async(
    handle: unknown,
    transaction: number,
    path: string,
    length: number[],
    done: (error: unknown, value: unknown) => void,
  ): void;
};

/**
 * libxenstore (libxenstore.so.4, a dependency of libxenvchan) through koffi.
 * Reads run on the libuv pool: each is a round trip to xenstored.
 */
export async function openXenstore(path = 'libxenstore.so.4'): Promise<Xenstore> {
  const koffi = await importKoffi();
  const library = koffi.load(path);
  declareOpaque(koffi, 'xs_handle');
  const open = library.func('xs_handle *xs_open(unsigned long flags)');
  const read = library.func(
    'void *xs_read(xs_handle *h, uint32_t t, const char *path, _Out_ unsigned int *len)',
  ) as unknown as XsRead;
  const rm = library.func('bool xs_rm(xs_handle *h, uint32_t t, const char *path)') as unknown as XsRm;
  const write = library.func(
    'bool xs_write(xs_handle *h, uint32_t t, const char *path, const void *data, unsigned int len)',
  ) as unknown as XsWrite;
  const free = koffi.load('libc.so.6').func('void free(void *ptr)');
  const handle: unknown = open(0);
  if (!handle) throw new VchanError(`cannot open xenstore (errno ${koffi.errno()})`);
  return {
    read: (key) =>
      new Promise((resolve, reject) => {
        const length = [0];
        read.async(handle, XBT_NULL, key, length, (error, value) => {
          if (error) reject(new VchanError(`xenstore read ${key}: ${String(error)}`, { cause: error }));
          else if (!value) resolve(undefined);
          else {
            const text = koffi.decode(value, 'char', length[0] ?? 0) as string;
            free(value);
            resolve(text);
          }
        });
      }),
    write: (key, value) =>
      new Promise((resolve, reject) => {
        const data = Buffer.from(value);
        write.async(handle, XBT_NULL, key, data, data.length, (error, ok) => {
          if (error || !ok)
            reject(new VchanError(`xenstore write ${key}: ${error ? String(error) : 'refused'}`));
          else resolve();
        });
      }),
    remove: (key) =>
      new Promise((resolve, reject) => {
        rm.async(handle, XBT_NULL, key, (error) => {
          if (error) reject(new VchanError(`xenstore rm ${key}: ${String(error)}`, { cause: error }));
          else resolve();
        });
      }),
  };
}
