import { VchanError } from '@odyssey/hal';
import type { LibxenvchanBinding, VchanCtrl } from './binding.js';
import { EventPoller } from './event-watch.js';
import { declareOpaque, importKoffi } from './koffi.js';
import {
  BLOCKING_FLAG,
  DEFAULT_LIBXENVCHAN,
  LIBXENVCHAN_PACKAGE,
  LIBXENVCHAN_PROTOTYPES,
  RING_ORDER_OFFSETS,
  type LibxenvchanFunction,
} from './prototypes.js';

type Bound = Record<LibxenvchanFunction, (...args: unknown[]) => unknown>;

/** One poll for all vchans of the process, whichever binding opened them. */
let poller: EventPoller | undefined;

/** The library to load when the caller names none: $ODYSSEY_LIBXENVCHAN, else Debian's soname. */
export function defaultLibxenvchanPath(): string {
  return process.env['ODYSSEY_LIBXENVCHAN'] || DEFAULT_LIBXENVCHAN;
}

/**
 * Loads libxenvchan (and koffi) and binds its twelve functions. Loading needs
 * no Xen: only opening a vchan does. Rejects with a VchanError that names the
 * Debian package when the library cannot be loaded.
 */
export async function loadLibxenvchan(path = defaultLibxenvchanPath()): Promise<LibxenvchanBinding> {
  const koffi = await importKoffi();
  let library: ReturnType<typeof koffi.load>;
  try {
    library = koffi.load(path);
  } catch (error) {
    throw new VchanError(
      `cannot load libxenvchan from ${path}: ${(error as Error).message}; ` +
        `install the Debian package ${LIBXENVCHAN_PACKAGE} or set ODYSSEY_LIBXENVCHAN to the library's path`,
      { cause: error },
    );
  }
  declareOpaque(koffi, 'libxenvchan');
  declareOpaque(koffi, 'xentoollog_logger');
  const fn = {} as Bound;
  for (const [name, prototype] of Object.entries(LIBXENVCHAN_PROTOTYPES)) {
    try {
      fn[name as LibxenvchanFunction] = library.func(prototype);
    } catch (error) {
      throw new VchanError(`${path} is not libxenvchan 4.17: ${(error as Error).message}`, { cause: error });
    }
  }
  const call = <T>(name: LibxenvchanFunction, ...args: unknown[]): T => fn[name](...args) as T;
  return {
    path,
    serverInit: (logger, domain, xsPath, readMin, writeMin) =>
      call<VchanCtrl | null>('serverInit', logger, domain, xsPath, readMin, writeMin),
    clientInit: (logger, domain, xsPath) => call<VchanCtrl | null>('clientInit', logger, domain, xsPath),
    close: (ctrl) => {
      fn.close(ctrl);
    },
    recv: (ctrl, data, size) => call<number>('recv', ctrl, data, size),
    read: (ctrl, data, size) => call<number>('read', ctrl, data, size),
    send: (ctrl, data, size) => call<number>('send', ctrl, data, size),
    write: (ctrl, data, size) => call<number>('write', ctrl, data, size),
    wait: (ctrl) => call<number>('wait', ctrl),
    fdForSelect: (ctrl) => call<number>('fdForSelect', ctrl),
    isOpen: (ctrl) => call<number>('isOpen', ctrl),
    dataReady: (ctrl) => call<number>('dataReady', ctrl),
    bufferSpace: (ctrl) => call<number>('bufferSpace', ctrl),
    setBlocking: (ctrl, blocking) => {
      const flags = koffi.decode(ctrl, BLOCKING_FLAG.offset, 'int') as number;
      const next = blocking ? flags | BLOCKING_FLAG.bit : flags & ~BLOCKING_FLAG.bit;
      koffi.encode(ctrl, BLOCKING_FLAG.offset, 'int', next);
    },
    ringSizes: (ctrl) => ({
      read: 2 ** (koffi.decode(ctrl, RING_ORDER_OFFSETS.read, 'int') as number),
      write: 2 ** (koffi.decode(ctrl, RING_ORDER_OFFSETS.write, 'int') as number),
    }),
    errno: () => koffi.errno(),
    watch: (fd) => (poller ??= new EventPoller(koffi)).watch(fd),
  };
}
