import type { Vchan } from '@odyssey/hal';

/**
 * Just enough of the qrexec wire protocol (qrexec-vchan reference §4) for the hal category to
 * talk to a guest's agent over raw vchans, the way dom0's qrexec daemon does; the suite does not
 * import the daemon's own implementation, so a bug there cannot hide one in the backend.
 */
export const MSG = {
  DATA_STDIN: 0x190,
  DATA_STDOUT: 0x191,
  DATA_STDERR: 0x192,
  DATA_EXIT_CODE: 0x193,
  EXEC_CMDLINE: 0x200,
  SERVICE_CONNECT: 0x202,
  TRIGGER_SERVICE3: 0x212,
  TRIGGER_SERVICE4: 0x213,
  HELLO: 0x300,
} as const;

/** The agent's control vchan port; data vchans use the ports dom0 picks. */
export const CONTROL_PORT = 512;
/** Largest data message payload of protocol 3 and later. */
export const MAX_CHUNK = 65536;
const PROTOCOL_VERSION = 3;

export interface Message {
  readonly type: number;
  readonly payload: Buffer;
}

export function encode(type: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

export const hello = (): Buffer => {
  const version = Buffer.alloc(4);
  version.writeUInt32LE(PROTOCOL_VERSION, 0);
  return encode(MSG.HELLO, version);
};

/** struct exec_params: the domain and port of the data vchan a message sets up. */
function execParams(domain: number, port: number): Buffer {
  const params = Buffer.alloc(8);
  params.writeUInt32LE(domain, 0);
  params.writeUInt32LE(port, 4);
  return params;
}

/**
 * MSG_EXEC_CMDLINE: the agent connects to `port` of `domain` (dom0 unless told otherwise) and
 * runs `user:command` there.
 */
export function execCmdline(port: number, command: string, domain = 0): Buffer {
  return encode(MSG.EXEC_CMDLINE, Buffer.concat([execParams(domain, port), Buffer.from(`${command}\0`)]));
}

/** Size of struct service_params, the request id (ident) of a service call. */
const IDENT_SIZE = 32;

/**
 * The request id of a MSG_TRIGGER_SERVICE3 (after the 64-byte target) or MSG_TRIGGER_SERVICE4
 * (after the 64-byte source and target) an agent sent for a call its domain made; undefined for
 * any other message, or one too short to carry it.
 */
export function triggerRequestId(message: Message): Buffer | undefined {
  const at =
    message.type === MSG.TRIGGER_SERVICE3 ? 64 : message.type === MSG.TRIGGER_SERVICE4 ? 128 : undefined;
  if (at === undefined || message.payload.length < at + IDENT_SIZE) return undefined;
  return message.payload.subarray(at, at + IDENT_SIZE);
}

/**
 * MSG_SERVICE_CONNECT: dom0's answer to the call `requestId`: its caller is the vchan server of
 * the call's data, for `domain` on `port`.
 */
export function serviceConnect(domain: number, port: number, requestId: Buffer): Buffer {
  return encode(MSG.SERVICE_CONNECT, Buffer.concat([execParams(domain, port), requestId]));
}

/** The messages arriving on one vchan, in order; `next()` fails once the vchan ended first. */
export class MessageReader {
  private buffered = Buffer.alloc(0);
  private readonly queue: Message[] = [];
  private ended: Error | undefined;
  private wake: (() => void) | undefined;
  /** Bytes received so far, whole messages or not. */
  received = 0;

  constructor(private readonly vchan: Vchan) {
    vchan.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 8) {
        const length = this.buffered.readUInt32LE(4);
        if (this.buffered.length < 8 + length) break;
        const type = this.buffered.readUInt32LE(0);
        this.queue.push({ type, payload: this.buffered.subarray(8, 8 + length) });
        this.buffered = this.buffered.subarray(8 + length);
      }
      this.wake?.();
    });
    const end = (why: string) => {
      this.ended ??= new Error(why);
      this.wake?.();
    };
    vchan.on('end', () => end('the vchan ended'));
    vchan.on('close', () => end('the vchan closed'));
    vchan.on('error', (e: Error) => end(`the vchan failed: ${e.message}`));
  }

  async next(): Promise<Message> {
    for (;;) {
      const message = this.queue.shift();
      if (message) return message;
      if (this.ended) throw this.ended;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  /** Waits for a message of `type`, skipping others; fails naming what came instead. */
  async expect(type: number, what: string): Promise<Message> {
    const skipped: number[] = [];
    for (;;) {
      const message = await this.next().catch((e: unknown) => {
        throw new Error(
          `${what}: ${String(e)} (messages before: ${skipped.map((t) => `0x${t.toString(16)}`).join(' ')})`,
        );
      });
      if (message.type === type) return message;
      skipped.push(message.type);
    }
  }
}

/** Writes `data`, waiting for 'drain' when write() says the ring is full; true when it ever did. */
export async function writeAll(vchan: Vchan, data: Buffer): Promise<boolean> {
  if (vchan.write(data)) return false;
  await new Promise<void>((resolve, reject) => {
    const closed = () => reject(new Error('the vchan closed while writing'));
    vchan.once('close', closed);
    vchan.once('drain', () => {
      vchan.off('close', closed);
      resolve();
    });
  });
  return true;
}
