/**
 * The twelve functions of libxenvchan as Debian's libxen-dev declares them in
 * /usr/include/libxenvchan.h (Xen 4.17), written in koffi's declaration syntax.
 * koffi has no `struct` keyword: `libxenvchan` and `xentoollog_logger` are
 * declared as opaque types of those names before these are parsed.
 */
export const LIBXENVCHAN_PROTOTYPES = {
  serverInit:
    'libxenvchan *libxenvchan_server_init(xentoollog_logger *logger, int domain, const char *xs_path, size_t read_min, size_t write_min)',
  clientInit:
    'libxenvchan *libxenvchan_client_init(xentoollog_logger *logger, int domain, const char *xs_path)',
  close: 'void libxenvchan_close(libxenvchan *ctrl)',
  recv: 'int libxenvchan_recv(libxenvchan *ctrl, void *data, size_t size)',
  read: 'int libxenvchan_read(libxenvchan *ctrl, void *data, size_t size)',
  send: 'int libxenvchan_send(libxenvchan *ctrl, const void *data, size_t size)',
  write: 'int libxenvchan_write(libxenvchan *ctrl, const void *data, size_t size)',
  wait: 'int libxenvchan_wait(libxenvchan *ctrl)',
  fdForSelect: 'int libxenvchan_fd_for_select(libxenvchan *ctrl)',
  isOpen: 'int libxenvchan_is_open(libxenvchan *ctrl)',
  dataReady: 'int libxenvchan_data_ready(libxenvchan *ctrl)',
  bufferSpace: 'int libxenvchan_buffer_space(libxenvchan *ctrl)',
} as const;

export type LibxenvchanFunction = keyof typeof LIBXENVCHAN_PROTOTYPES;

/** The soname Debian's libxenmisc4.17 installs. */
export const DEFAULT_LIBXENVCHAN = 'libxenvchan.so.4.17';

/** The Debian package that ships the library, named in load errors. */
export const LIBXENVCHAN_PACKAGE = 'libxenmisc4.17';

/**
 * Where `struct libxenvchan` (libxenvchan.h, a public struct: Qubes' libvchan sets the flag the
 * same way) keeps `int blocking:1` on x86-64: the bit-field word after `uint32_t event_port`,
 * whose bits are is_server, server_persist, blocking from the lowest.
 */
export const BLOCKING_FLAG = { offset: 28, bit: 1 << 2 } as const;

/**
 * Where `struct libxenvchan` keeps each ring's `int order` on x86-64 (the ring holds 1 << order
 * bytes; offsets measured with gcc against libxen-dev's header): libxenvchan's own copy, checked
 * against its limits when the channel was set up. A client learns only here what the server chose.
 */
export const RING_ORDER_OFFSETS = { read: 48, write: 72 } as const;
