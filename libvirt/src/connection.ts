import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { ConnectionClosedError, LibvirtError, decodeRemoteError } from './errors.js';
import {
  DEFAULT_KEEPALIVE,
  KeepaliveMonitor,
  KeepaliveProcedure,
  type KeepaliveOptions,
} from './keepalive.js';
import {
  PacketReader,
  PacketStatus,
  PacketType,
  Program,
  PROTOCOL_VERSION,
  encodePacket,
  type Packet,
  type PacketHeader,
} from './packet.js';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

export type Encoder = (w: XdrWriter) => void;
export type Decoder<T> = (r: XdrReader) => T;

interface PendingCall {
  program: number;
  procedure: number;
  decode: Decoder<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

/** Receives the packets that follow a stream call's reply. */
export interface StreamSink {
  /** Raw bytes from a STREAM/CONTINUE packet. */
  data(chunk: Buffer): void;
  /** An empty STREAM/CONTINUE packet: the daemon has no more data to send. */
  eof(): void;
  /** STREAM/OK: the daemon confirms our finish handshake. */
  confirmed(): void;
  /** STREAM/ERROR for the stream's serial, a packet the stream cannot take, or the connection died. */
  error(err: Error): void;
}

export interface RpcConnectionEvents {
  /** An asynchronous MESSAGE packet of the remote program (domain events etc.). */
  message: [procedure: number, payload: Buffer];
  /** The connection is gone; `error` says why, and is undefined after a requested close. */
  close: [error: ConnectionClosedError | undefined];
}

export interface RpcConnectionOptions {
  /** `false` disables keepalive. */
  keepalive?: KeepaliveOptions | false;
}

const noRet: Decoder<void> = () => undefined;

/**
 * One UNIX socket to a libvirt daemon carrying many calls at once: every CALL gets a serial and
 * the daemon's REPLY (or STREAM) packets are routed back by it. Asynchronous MESSAGE packets
 * are emitted as 'message'. When the socket dies, every pending call is rejected.
 */
export class RpcConnection extends EventEmitter<RpcConnectionEvents> {
  private readonly reader = new PacketReader();
  private readonly pending = new Map<number, PendingCall>();
  private readonly streams = new Map<number, StreamSink>();
  private readonly keepalive: KeepaliveMonitor | undefined;
  private nextSerial = 1;
  private closedWith: ConnectionClosedError | undefined;
  private closed = false;
  private readPausers = 0;
  private corked = false;

  private constructor(
    private readonly socket: Socket,
    options: RpcConnectionOptions,
  ) {
    super();
    const ka = options.keepalive === undefined ? DEFAULT_KEEPALIVE : options.keepalive;
    if (ka) {
      this.keepalive = new KeepaliveMonitor(
        ka,
        () => this.sendKeepalive(KeepaliveProcedure.PING),
        (silentMs) =>
          this.destroy(
            new ConnectionClosedError(`libvirt daemon did not answer keepalive for ${silentMs} ms`),
          ),
      );
    }
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy(new ConnectionClosedError('libvirt daemon closed the connection')));
  }

  static open(path: string, options: RpcConnectionOptions = {}): Promise<RpcConnection> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const fail = (err: Error) => {
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('connect', () => {
        socket.off('error', fail);
        const conn = new RpcConnection(socket, options);
        conn.keepalive?.start();
        resolve(conn);
      });
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Calls a procedure of the remote program and decodes its reply. */
  call<T = void>(procedure: number, encode?: Encoder, decode?: Decoder<T>): Promise<T> {
    return this.dispatch(procedure, encode, decode ?? (noRet as Decoder<T>)).reply;
  }

  /** Calls a procedure of libvirt's QEMU program (its numbers are that program's own). */
  callQemu<T = void>(procedure: number, encode?: Encoder, decode?: Decoder<T>): Promise<T> {
    return this.dispatch(procedure, encode, decode ?? (noRet as Decoder<T>), undefined, Program.QEMU).reply;
  }

  /**
   * Calls a procedure that opens a stream. The sink receives every packet for the returned
   * serial after the reply, until it is released with `endStream`.
   */
  callStream(procedure: number, encode: Encoder, sink: StreamSink): { serial: number; reply: Promise<void> } {
    return this.dispatch(procedure, encode, noRet, sink);
  }

  private dispatch<T>(
    procedure: number,
    encode: Encoder | undefined,
    decode: Decoder<T>,
    sink?: StreamSink,
    program: number = Program.REMOTE,
  ): { serial: number; reply: Promise<T> } {
    if (this.closed) return { serial: 0, reply: Promise.reject(this.closedError()) };
    let payload: Buffer | undefined;
    if (encode) {
      const w = new XdrWriter();
      try {
        encode(w);
      } catch (err) {
        return { serial: 0, reply: Promise.reject(err as Error) };
      }
      payload = w.bytes();
    }
    const serial = this.allocSerial();
    const reply = new Promise<T>((resolve, reject) => {
      this.pending.set(serial, {
        program,
        procedure,
        decode,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
    });
    // The stream's first packets may arrive in the same read as the reply, so the sink has to
    // be in place before the call goes out.
    if (sink) this.streams.set(serial, sink);
    this.write({ ...this.header(procedure, PacketType.CALL, serial, PacketStatus.OK), program }, payload);
    return { serial, reply };
  }

  /** Sends one STREAM packet; resolves once the socket can take more (backpressure). */
  sendStream(procedure: number, serial: number, status: PacketStatus, data?: Uint8Array): Promise<void> {
    if (this.closed) return Promise.reject(this.closedError());
    const flushed = this.write(this.header(procedure, PacketType.STREAM, serial, status), data);
    if (flushed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.off('close', onClose);
        resolve();
      };
      const onClose = () => {
        this.socket.off('drain', onDrain);
        reject(this.closedError());
      };
      this.socket.once('drain', onDrain);
      this.once('close', onClose);
    });
  }

  endStream(serial: number): void {
    this.streams.delete(serial);
  }

  /**
   * Stops reading the socket until every pauser has resumed. This is how a slow stream consumer
   * pushes back on the daemon; it also delays replies to other calls, exactly as a full pipe would.
   */
  pauseReading(): void {
    if (this.readPausers++ === 0) {
      this.socket.pause();
      this.keepalive?.setSuspended(true);
    }
  }

  resumeReading(): void {
    if (this.readPausers === 0) return;
    if (--this.readPausers === 0) {
      this.keepalive?.setSuspended(false);
      this.socket.resume();
    }
  }

  /** Ends the socket after pending writes; pending calls are rejected. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.finish(undefined);
      this.socket.end();
    });
  }

  /** Drops the connection at once, failing everything in flight with a ConnectionClosedError. */
  destroy(err: Error): void {
    if (this.closed) return;
    this.finish(
      err instanceof ConnectionClosedError
        ? err
        : new ConnectionClosedError(`libvirt connection lost: ${err.message}`, { cause: err }),
    );
    this.socket.destroy();
  }

  private finish(err: ConnectionClosedError | undefined): void {
    this.closed = true;
    this.closedWith = err;
    this.keepalive?.stop();
    const reason = this.closedError();
    const pending = [...this.pending.values()];
    const streams = [...this.streams.values()];
    this.pending.clear();
    this.streams.clear();
    for (const call of pending) call.reject(reason);
    for (const sink of streams) sink.error(reason);
    this.emit('close', err);
  }

  private closedError(): ConnectionClosedError {
    return this.closedWith ?? new ConnectionClosedError('libvirt connection closed');
  }

  private allocSerial(): number {
    const serial = this.nextSerial;
    this.nextSerial = serial >= 0xffffffff ? 1 : serial + 1;
    return serial;
  }

  private header(procedure: number, type: PacketType, serial: number, status: PacketStatus): PacketHeader {
    return { program: Program.REMOTE, version: PROTOCOL_VERSION, procedure, type, serial, status };
  }

  private write(header: PacketHeader, payload?: Uint8Array): boolean {
    // Calls issued in the same tick leave in one writev instead of one syscall each.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    return this.socket.write(encodePacket(header, payload));
  }

  private sendKeepalive(procedure: number): void {
    if (this.closed) return;
    this.write({
      program: Program.KEEPALIVE,
      version: PROTOCOL_VERSION,
      procedure,
      type: PacketType.MESSAGE,
      serial: 0,
      status: PacketStatus.OK,
    });
  }

  private onData(chunk: Buffer): void {
    this.keepalive?.seen();
    let packets: Packet[];
    try {
      packets = this.reader.push(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return;
    }
    for (const packet of packets) {
      if (this.closed) return;
      this.route(packet);
    }
  }

  /** As libvirt's client (virNetClientCallDispatch): a packet it would refuse fails the connection. */
  private route({ header, payload }: Packet): void {
    if (header.program === Program.KEEPALIVE) {
      // The daemon takes any packet from us as proof of life (virKeepAliveCheckMessage), so bytes
      // already waiting to be written answer this PING too. Answering each one would queue a PONG
      // per PING for a daemon that sends PINGs but does not read.
      if (header.procedure === KeepaliveProcedure.PING && this.socket.writableLength === 0) {
        this.sendKeepalive(KeepaliveProcedure.PONG);
      }
      return;
    }
    const remote = header.program === Program.REMOTE && header.version === PROTOCOL_VERSION;
    switch (header.type) {
      case PacketType.MESSAGE:
        if (remote) this.emit('message', header.procedure, payload);
        return;
      case PacketType.STREAM:
      case PacketType.STREAM_HOLE: {
        // Packets of a stream we have ended are expected: the daemon sent them before it saw our abort.
        const sink = remote ? this.streams.get(header.serial) : undefined;
        if (sink) this.toStream(sink, header, payload);
        return;
      }
      case PacketType.REPLY: {
        const call = this.pending.get(header.serial);
        if (!call || call.program !== header.program || header.version !== PROTOCOL_VERSION) {
          this.protocolError(
            `no call waiting for reply with program ${header.program} version ${header.version} serial ${header.serial}`,
          );
          return;
        }
        this.pending.delete(header.serial);
        // A stream whose call failed gets no packets: nobody would read them, and a stalled
        // download sink would stop reading the socket for good.
        if (!this.settle(call, header, payload)) this.streams.delete(header.serial);
        return;
      }
      default:
        this.protocolError(`unexpected packet type ${header.type} for serial ${header.serial}`);
    }
  }

  private protocolError(message: string): void {
    this.destroy(new XdrError(`libvirt protocol error: ${message}`));
  }

  /** Resolves or rejects the call; true if it succeeded. */
  private settle(call: PendingCall, header: PacketHeader, payload: Buffer): boolean {
    try {
      if (header.procedure !== call.procedure) {
        throw new XdrError(`reply for procedure ${header.procedure} to a call of ${call.procedure}`);
      }
      const r = new XdrReader(payload);
      if (header.status === PacketStatus.ERROR) {
        call.reject(new LibvirtError(decodeRemoteError(r), call.procedure));
        return false;
      }
      if (header.status !== PacketStatus.OK) throw new XdrError(`unexpected reply status ${header.status}`);
      const value = call.decode(r);
      r.end();
      call.resolve(value);
      return true;
    } catch (err) {
      call.reject(err as Error);
      return false;
    }
  }

  private toStream(sink: StreamSink, header: PacketHeader, payload: Buffer): void {
    if (header.status === PacketStatus.ERROR) {
      this.streams.delete(header.serial);
      let err: Error;
      try {
        err = new LibvirtError(decodeRemoteError(new XdrReader(payload)), header.procedure);
      } catch (decodeErr) {
        err = decodeErr as Error;
      }
      sink.error(err);
      return;
    }
    if (header.status !== PacketStatus.OK && header.status !== PacketStatus.CONTINUE) {
      this.protocolError(`unexpected stream status ${header.status} for serial ${header.serial}`);
      return;
    }
    if (header.type === PacketType.STREAM_HOLE) {
      // We never ask for sparse streams; skipping a hole would shift every byte after it.
      this.streams.delete(header.serial);
      sink.error(new XdrError('daemon sent a hole in a stream that is not sparse'));
      return;
    }
    if (header.status === PacketStatus.OK) sink.confirmed();
    else if (payload.length === 0) sink.eof();
    else sink.data(payload);
  }
}
