import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PacketReader, PacketStatus, PacketType, Program, encodePacket, type Packet } from '../src/packet.js';
import { Proc } from '../src/procedures/numbers.js';
import { XdrWriter } from '../src/xdr.js';

export const xdr = (f: (w: XdrWriter) => void): Buffer => {
  const w = new XdrWriter();
  f(w);
  return Buffer.from(w.bytes());
};

/** The daemon's end of one client connection. */
export class FakePeer {
  private readonly reader = new PacketReader();
  private readonly got: Packet[] = [];
  private waiter: (() => void) | undefined;
  /** Keepalive PONGs the client sent. */
  pongs = 0;
  /** Answers calls without a test looking at them; undefined leaves them to `next()`. */
  autoAnswer: ((call: Packet) => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      for (const p of this.reader.push(c)) {
        if (p.header.program === Program.KEEPALIVE) this.pongs++;
        else if (this.autoAnswer && p.header.type === PacketType.CALL) this.autoAnswer(p);
        else this.got.push(p);
      }
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  /** The next packet the client sent, keepalive answers aside. */
  async next(): Promise<Packet> {
    while (this.got.length === 0) await new Promise<void>((r) => (this.waiter = r));
    return this.got.shift() as Packet;
  }

  /** Sends one packet of the remote program; returns false when the socket's buffer is full. */
  send(
    header: { type: number; serial: number; procedure: number; status?: number; program?: number },
    payload?: Uint8Array,
  ): boolean {
    return this.socket.write(
      encodePacket(
        {
          program: header.program ?? Program.REMOTE,
          version: 1,
          procedure: header.procedure,
          type: header.type as PacketType,
          serial: header.serial,
          status: (header.status ?? PacketStatus.OK) as PacketStatus,
        },
        payload,
      ),
    );
  }

  answer(call: Packet, payload?: Uint8Array): void {
    this.send(
      { type: PacketType.REPLY, serial: call.header.serial, procedure: call.header.procedure },
      payload,
    );
  }

  /** Fails a call with a libvirt error (`code`, as virErrorNumber). */
  fail(call: Packet, code: number, message: string): void {
    this.send(
      {
        type: PacketType.REPLY,
        serial: call.header.serial,
        procedure: call.header.procedure,
        status: PacketStatus.ERROR,
      },
      xdr((w) => {
        w.int(code)
          .int(0)
          .optional(message, (x, v) => x.string(v))
          .int(2)
          .bool(false);
        w.bool(false).bool(false).bool(false).int(0).int(0).bool(false);
      }),
    );
  }

  /** A lifecycle event for the daemon-side callback `callbackId`. */
  lifecycle(
    callbackId: number,
    dom: { name: string; uuid: string; id: number },
    event: number,
    detail = 0,
  ): void {
    this.send(
      { type: PacketType.MESSAGE, serial: 0, procedure: Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE },
      xdr((w) => {
        w.int(callbackId)
          .string(dom.name)
          .fixedOpaque(Buffer.from(dom.uuid.replace(/-/g, ''), 'hex'), 16);
        w.int(dom.id).int(event).int(detail);
      }),
    );
  }
}

/** A libvirt daemon on a UNIX socket whose every answer a test scripts. */
export class FakeDaemon {
  readonly peers: FakePeer[] = [];
  /** Called as each client connects, before it can send anything (to set `autoAnswer`). */
  serve: ((p: FakePeer) => void) | undefined;
  private accepted: ((p: FakePeer) => void) | undefined;

  private readonly server: Server = createServer((s) => this.accept(s));

  private constructor(private readonly dir: string) {}

  static async start(): Promise<FakeDaemon> {
    const daemon = new FakeDaemon(mkdtempSync(join(tmpdir(), 'odyssey-libvirt-fake-')));
    await new Promise<void>((r) => daemon.server.listen(daemon.socket, r));
    return daemon;
  }

  private accept(socket: Socket): void {
    const p = new FakePeer(socket);
    this.peers.push(p);
    this.serve?.(p);
    this.accepted?.(p);
  }

  get socket(): string {
    return join(this.dir, 'sock');
  }

  /** The next connection a client opens. */
  nextPeer(): Promise<FakePeer> {
    return new Promise((r) => (this.accepted = r));
  }

  dropPeers(): void {
    for (const p of this.peers.splice(0)) p.socket.destroy();
  }

  async stop(): Promise<void> {
    this.dropPeers();
    await new Promise((r) => this.server.close(r));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
