import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import {
  LIBXENVCHAN_PROTOTYPES,
  XenVchanTransport,
  loadLibxenvchan,
  type LibxenvchanBinding,
  type VchanCtrl,
} from '../src/index.js';

const HEADER = '/usr/include/libxenvchan.h';
const underXen = existsSync('/dev/xen/evtchn');

/** The function declarations of libxenvchan.h, normalised to koffi's spelling. */
function headerDeclarations(): string[] {
  const text = readFileSync(HEADER, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  return [...text.matchAll(/^[a-z][^;{}#]*\blibxenvchan_\w+\s*\([^)]*\)\s*;/gm)].map((match) =>
    match[0]
      .replace(/;$/, '')
      .replace(/\bstruct\s+/g, '')
      .replace(/\s*\*\s*/g, ' *')
      .replace(/\s+/g, ' ')
      .replace(/\( /g, '(')
      .trim(),
  );
}

/** The real binding with init calls counted. */
async function countingBinding(): Promise<{ binding: LibxenvchanBinding; inits: () => number }> {
  const real = await loadLibxenvchan();
  let inits = 0;
  const binding: LibxenvchanBinding = {
    ...real,
    serverInit: (...args) => (inits++, real.serverInit(...args)),
    clientInit: (...args) => (inits++, real.clientInit(...args)),
  };
  return { binding, inits: () => inits };
}

describe('libxenvchan on this host', () => {
  it.skipIf(!existsSync(HEADER))('declares the twelve functions exactly as libxenvchan.h does', () => {
    const declared = headerDeclarations();
    expect(declared).toHaveLength(12);
    expect(new Set(Object.values(LIBXENVCHAN_PROTOTYPES))).toEqual(new Set(declared));
  });

  it('loads the library and binds all twelve functions', async () => {
    const binding = await loadLibxenvchan();
    expect(binding.path).toBe('libxenvchan.so.4.17');
    for (const name of Object.keys(LIBXENVCHAN_PROTOTYPES)) {
      expect(typeof binding[name as keyof typeof LIBXENVCHAN_PROTOTYPES], name).toBe('function');
    }
  });

  it('names the Debian package when the library is missing', async () => {
    await expect(loadLibxenvchan('/nonexistent/libxenvchan.so.4.17')).rejects.toThrow(
      /cannot load libxenvchan from \/nonexistent\/libxenvchan\.so\.4\.17: .*install the Debian package libxenmisc4\.17/,
    );
    const transport = new XenVchanTransport({ libraryPath: '/nonexistent/libxenvchan.so.4.17' });
    await expect(transport.listen('0', 512)).rejects.toThrow(/libxenmisc4\.17/);
  });

  it('refuses a library that lacks the functions', async () => {
    await expect(loadLibxenvchan('libc.so.6')).rejects.toThrow(
      /libc\.so\.6 is not libxenvchan 4\.17: .*libxenvchan_server_init/,
    );
  });

  it("sets the blocking flag libxenvchan_send reads, and no other, and reads the rings' sizes where the library does", async () => {
    const binding = await loadLibxenvchan();
    // A ctrl laid out as libxenvchan.h declares it, in memory of our own: its ring page says the
    // server lives, its 4 KiB write ring is empty, and every flag bit is set (malloc's garbage).
    const struct = koffi.alloc('uint8_t', 88);
    const page = koffi.alloc('uint8_t', 4096);
    const ring = koffi.alloc('uint8_t', 4096);
    new Uint8Array(koffi.view(struct, 88)).fill(0);
    new Uint8Array(koffi.view(page, 4096)).fill(0);
    koffi.encode(struct, 8, 'uint64', koffi.address(page));
    koffi.encode(struct, 28, 'int', 0x7);
    koffi.encode(page, 21, 'uint8', 1);
    koffi.encode(struct, 56, 'uint64', koffi.address(page) + 8n);
    koffi.encode(struct, 64, 'uint64', koffi.address(ring));
    koffi.encode(struct, 72, 'int', 12);
    // Its 1 KiB read ring holds 10 bytes that wrap around the ring's end (cons 1020, prod 1030).
    const readRing = koffi.alloc('uint8_t', 4096);
    new Uint8Array(koffi.view(readRing, 4096)).forEach((_, i, bytes) => (bytes[i] = i % 251));
    koffi.encode(struct, 32, 'uint64', koffi.address(page));
    koffi.encode(struct, 40, 'uint64', koffi.address(readRing));
    koffi.encode(struct, 48, 'int', 10);
    koffi.encode(page, 0, 'uint32', 1020);
    koffi.encode(page, 4, 'uint32', 1030);
    // A pointer typed as the library's own functions return it (the binding declared the type).
    const slot = koffi.alloc('uint64', 1);
    koffi.encode(slot, 0, 'uint64', koffi.address(struct));
    const ctrl = koffi.decode(slot, 0, 'libxenvchan *') as VchanCtrl;
    const tooLarge = Buffer.alloc(8192);
    try {
      // More than the ring holds: -1 in blocking mode, 0 (nothing sent, no wait) otherwise.
      expect(binding.send(ctrl, tooLarge, tooLarge.length)).toBe(-1);
      binding.setBlocking(ctrl, false);
      expect(koffi.decode(struct, 28, 'int')).toBe(0x3);
      expect(binding.send(ctrl, tooLarge, tooLarge.length)).toBe(0);
      expect(binding.write(ctrl, Buffer.from('abc'), 3)).toBe(3);
      binding.setBlocking(ctrl, true);
      expect(koffi.decode(struct, 28, 'int')).toBe(0x7);
      expect(binding.send(ctrl, tooLarge, tooLarge.length)).toBe(-1);
      // The sizes the binding reports are the ones the library wraps by: 4 bytes from the read
      // ring's end, then 6 from its start, only if its order (10) sits where ringSizes reads it.
      expect(binding.ringSizes(ctrl)).toEqual({ read: 1024, write: 4096 });
      const read = Buffer.alloc(10);
      expect(binding.read(ctrl, read, 10)).toBe(10);
      expect([...read]).toEqual([1020, 1021, 1022, 1023, 0, 1, 2, 3, 4, 5].map((i) => i % 251));
    } finally {
      for (const memory of [struct, page, ring, readRing, slot]) koffi.free(memory);
    }
  });

  it.skipIf(underXen)('rejects listen and connect outside Xen without opening a vchan', async () => {
    const { binding, inits } = await countingBinding();
    const transport = new XenVchanTransport({ binding, localDomid: 3 });
    await expect(transport.listen('0', 512)).rejects.toThrow(
      'not running under Xen: /dev/xen/evtchn does not exist',
    );
    await expect(transport.connect('0', 512)).rejects.toThrow(
      'not running under Xen: /dev/xen/evtchn does not exist',
    );
    expect(inits()).toBe(0);
  });

  it.skipIf(underXen)('reports the errno of a failed libxenvchan_server_init', async () => {
    const transport = new XenVchanTransport({ evtchnDevice: '/dev/null', localDomid: 0 });
    await expect(transport.listen('0', 512)).rejects.toThrow(
      /^libxenvchan_server_init\(0, "data\/vchan\/0\/512"\) returned NULL: errno [1-9]\d* \(E[A-Z]+\)$/,
    );
  });
});

/** A FIFO opened read-write (no waiting for a writer), standing in for /dev/xen/evtchn. */
function fifo(dir: string, name: string): number {
  const path = join(dir, name);
  execFileSync('mkfifo', [path]);
  return openSync(path, 'r+');
}

function drain(fd: number): void {
  readSync(fd, Buffer.alloc(16));
}

const tick = (ms = 50): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the event-channel watch', () => {
  it('waits off the main thread until the fd is readable, and wakes on demand', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xen-watch-'));
    const fd = fifo(dir, 'evtchn');
    try {
      const watch = (await loadLibxenvchan()).watch(fd);
      let settled: boolean | undefined;
      const first = watch.next().then((event) => (settled = event));
      await tick();
      expect(settled).toBeUndefined();
      writeSync(fd, 'x');
      expect(await first).toBe(true);
      drain(fd);
      const second = watch.next();
      await tick();
      watch.wake();
      expect(await second).toBe(false);
      watch.close();
    } finally {
      closeSync(fd);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('watches many fds with one poll and answers each its own', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'xen-watch-'));
    const fds = [fifo(dir, 'a'), fifo(dir, 'b'), fifo(dir, 'c')];
    try {
      const binding = await loadLibxenvchan();
      const watches = fds.map((fd) => binding.watch(fd));
      const results: (boolean | undefined)[] = [undefined, undefined, undefined];
      const pending = watches.map((watch, i) => watch.next().then((event) => (results[i] = event)));
      await tick();
      writeSync(fds[1] as number, 'x');
      await pending[1];
      expect(results).toEqual([undefined, true, undefined]);
      watches[2]?.wake();
      await pending[2];
      expect(results).toEqual([undefined, true, false]);
      writeSync(fds[0] as number, 'x');
      await pending[0];
      expect(results).toEqual([true, true, false]);
      for (const watch of watches) watch.close();
    } finally {
      for (const fd of fds) closeSync(fd);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
