import type { Readable, Writable } from 'node:stream';
import { decodeExitCode, encodeExitCode } from './codec.js';
import { MAX_DATA_CHUNK_V2, MAX_DATA_CHUNK_V3, MSG_HEADER_SIZE, MsgType } from './constants.js';
import { QrexecProtocolError } from './errors.js';
import { writeMessage, type MessageReader } from './framing.js';

/*
 * The data phase of one call (reference §4.4), after the HELLO exchange on
 * the data vchan: the caller streams STDIN, the service side streams STDOUT
 * and STDERR and ends with EXIT_CODE. A zero-length chunk is the EOF of its
 * stream.
 */

/** Upstream's max_data_chunk_size: a peer that sends a longer chunk breaks the protocol. */
function maxChunk(version: number): number {
  return version >= 3 ? MAX_DATA_CHUNK_V3 : MAX_DATA_CHUNK_V2;
}

/** Largest payload per chunk: the protocol's limit, less a header, so a chunk fits the 64 KiB ring. */
export function maxChunkPayload(version: number): number {
  return maxChunk(version) - MSG_HEADER_SIZE;
}

/** Exit status reported when the service side went away without sending one. */
export const EXIT_CODE_UNKNOWN = 255;

async function sendStream(
  channel: Writable,
  type: number,
  source: Readable | null,
  limit: number,
): Promise<void> {
  if (source) {
    for await (const data of source) {
      const chunk = typeof data === 'string' ? Buffer.from(data) : (data as Buffer);
      for (let offset = 0; offset < chunk.length; offset += limit) {
        await writeMessage(channel, type, chunk.subarray(offset, offset + limit));
      }
    }
  }
  await writeMessage(channel, type);
}

async function writeTo(sink: Writable, data: Buffer): Promise<void> {
  if (sink.destroyed || sink.writableEnded) return;
  if (sink.write(data)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      sink.off('drain', done);
      sink.off('close', done);
      sink.off('error', done);
      resolve();
    };
    sink.on('drain', done);
    sink.on('close', done);
    sink.on('error', done);
  });
}

export interface ServiceSideStreams {
  /** Receives the caller's STDIN; ended at its EOF. */
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  /** null for services without stderr (sockets): its EOF is sent at once. */
  readonly stderr: Readable | null;
  readonly exitCode: Promise<number>;
  /**
   * Ends the service because its caller is gone (the data vchan closed before EXIT_CODE), as a
   * terminal hangup ends a shell; its output streams end with it. Without it the service runs on.
   */
  readonly hangup?: () => void;
}

/** Runs the service end of the data phase until EXIT_CODE is sent. */
export async function runServiceSide(
  channel: Writable,
  reader: MessageReader,
  version: number,
  streams: ServiceSideStreams,
): Promise<void> {
  const limit = maxChunkPayload(version);
  const stdin = streams.stdin;
  stdin?.on('error', () => undefined);
  let exitSent = false;
  // Read on past STDIN's EOF: the channel closing before EXIT_CODE went out means the caller is gone.
  const receiving = (async () => {
    let input = true;
    for (;;) {
      const message = await reader.next(maxChunk(version));
      if (!message) break;
      if (message.type !== MsgType.DATA_STDIN || !input) {
        throw new QrexecProtocolError(`unexpected message 0x${message.type.toString(16)} from the caller`);
      }
      if (message.payload.length === 0) {
        input = false;
        stdin?.end();
      } else if (stdin) {
        await writeTo(stdin, message.payload);
      }
    }
    if (input) stdin?.end();
    if (!exitSent) streams.hangup?.();
  })();
  // A caller that breaks the protocol loses the call: the service's input and the channel close.
  receiving.catch(() => {
    stdin?.destroy();
    channel.destroy();
  });
  await Promise.all([
    sendStream(channel, MsgType.DATA_STDERR, streams.stderr, limit),
    sendStream(channel, MsgType.DATA_STDOUT, streams.stdout, limit),
  ]);
  const code = await streams.exitCode;
  exitSent = true;
  await writeMessage(channel, MsgType.DATA_EXIT_CODE, encodeExitCode(code));
}

/** Sends EXIT_CODE alone: the service could not be found or started. */
export async function sendExitCodeOnly(channel: Writable, code: number): Promise<void> {
  await writeMessage(channel, MsgType.DATA_EXIT_CODE, encodeExitCode(code));
}

export interface CallerSideStreams {
  readonly stdin: Readable | null;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** Runs the caller end of the data phase; resolves with the service's exit code. */
export async function runCallerSide(
  channel: Writable,
  reader: MessageReader,
  version: number,
  streams: CallerSideStreams,
): Promise<number> {
  const sending = sendStream(channel, MsgType.DATA_STDIN, streams.stdin, maxChunkPayload(version));
  // The service may finish without reading all of stdin; the channel closing then is not an error.
  sending.catch(() => undefined);
  for (;;) {
    const message = await reader.next(maxChunk(version));
    if (!message) return EXIT_CODE_UNKNOWN;
    switch (message.type) {
      case MsgType.DATA_STDOUT:
      case MsgType.DATA_STDERR: {
        const sink = message.type === MsgType.DATA_STDOUT ? streams.stdout : streams.stderr;
        if (message.payload.length === 0) sink.end();
        else await writeTo(sink, message.payload);
        break;
      }
      case MsgType.DATA_EXIT_CODE:
        return decodeExitCode(message.payload);
      default:
        throw new QrexecProtocolError(`unexpected message 0x${message.type.toString(16)} from the service`);
    }
  }
}
