import fc from 'fast-check';
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  EXEC_PARAMS_SIZE,
  MAX_DATA_CHUNK_V2,
  MAX_DATA_CHUNK_V3,
  MAX_QREXEC_CMD_LEN,
  MAX_SERVICE_NAME_LEN,
  MSG_HEADER_SIZE,
  MessageReader,
  MsgType,
  QrexecProtocolError,
  TRIGGER_SERVICE_PARAMS3_SIZE,
  TRIGGER_SERVICE_PARAMS4_SIZE,
  TRIGGER_SERVICE_PARAMS_SIZE,
  checkAgentHeader,
  decodeExecParams,
  encodeExitCode,
  encodeExecParams,
  encodeHeader,
  encodeMessage,
  encodeServiceParams,
  encodeTrigger3,
  encodeTrigger4,
  exchangeHello,
  execCmdline,
  parseTrigger,
  runCallerSide,
  runServiceSide,
  type QrexecMessage,
} from '../src/index.js';

/*
 * Properties of what dom0 or a VM decodes from bytes its peer chose: a
 * hostile domain controls every byte and every split of a qrexec vchan.
 */

/** The reader's bound on a payload: the longest command line with its exec_params, and some room. */
const READER_LIMIT = Math.max(MAX_QREXEC_CMD_LEN, MAX_DATA_CHUNK_V3) + 256;

/** Splits `bytes` at the given fractions of its length. */
function chunks(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let start = 0;
  for (const p of [...points, bytes.length]) {
    out.push(bytes.subarray(start, p));
    start = p;
  }
  return out.filter((c) => c.length > 0);
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface ReadOutcome {
  readonly messages: QrexecMessage[];
  /** Set when the reader ended with an error rather than a clean end of stream. */
  readonly error?: unknown;
}

/** Feeds `parts` one at a time, each in its own turn of the event loop, then ends the stream. */
async function readStream(parts: Buffer[], end = true): Promise<ReadOutcome> {
  const stream = new PassThrough();
  const reader = new MessageReader(stream);
  const reading = (async (): Promise<ReadOutcome> => {
    const messages: QrexecMessage[] = [];
    try {
      for (;;) {
        const message = await reader.next();
        if (!message) return { messages };
        messages.push(message);
      }
    } catch (error) {
      return { messages, error };
    }
  })();
  for (const part of parts) {
    stream.write(part);
    await tick();
  }
  if (end) stream.end();
  return reading;
}

const TRUNCATED = /^stream ended inside (a )?message/;

/** What the reader must make of `bytes`: whole messages, then a clean end, a truncation or an oversize header. */
function expectedOutcome(bytes: Buffer): { messages: QrexecMessage[]; error?: RegExp } {
  const messages: QrexecMessage[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < MSG_HEADER_SIZE) return { messages, error: TRUNCATED };
    const type = bytes.readUInt32LE(offset);
    const len = bytes.readUInt32LE(offset + 4);
    if (len > READER_LIMIT) return { messages, error: /too long/ };
    const start = offset + MSG_HEADER_SIZE;
    if (start + len > bytes.length) return { messages, error: TRUNCATED };
    messages.push({ type, payload: Buffer.from(bytes.subarray(start, start + len)) });
    offset = start + len;
  }
  return { messages };
}

/** Messages in a form whose comparison stays fast for 64 KiB payloads. */
const summary = (messages: readonly QrexecMessage[]): { type: number; payload: string }[] =>
  messages.map((m) => ({ type: m.type, payload: m.payload.toString('base64') }));

const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 24 });

describe('MessageReader on a hostile stream', () => {
  const payloadArb = fc.oneof(
    { weight: 8, arbitrary: fc.uint8Array({ maxLength: 600 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: MAX_DATA_CHUNK_V3, maxLength: MAX_DATA_CHUNK_V3 }) },
  );
  const messageArb = fc.record({
    type: fc.oneof(fc.constantFrom(...Object.values(MsgType)), fc.nat({ max: 0xffffffff })),
    payload: payloadArb.map((a) => Buffer.from(a)),
  });

  it('yields the same messages however the stream is cut', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(messageArb, { maxLength: 6 }), cutsArb, async (messages, cuts) => {
        const bytes = Buffer.concat(messages.map((m) => encodeMessage(m.type, m.payload)));
        const outcome = await readStream(chunks(bytes, cuts));
        expect(outcome.error).toBeUndefined();
        expect(summary(outcome.messages)).toEqual(summary(messages));
      }),
      { numRuns: 60 },
    );
  });

  it('on any bytes yields whole messages, then ends cleanly or with a protocol error', async () => {
    const hostile = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      // Plausible headers with lengths around every bound, and bytes after them.
      fc
        .record({
          type: fc.nat({ max: 0xffffffff }),
          len: fc.oneof(
            fc.nat({ max: 400 }),
            fc.constantFrom(READER_LIMIT, READER_LIMIT + 1, 0x7fffffff, 0x80000000, 0xffffffff),
          ),
          tail: fc.uint8Array({ maxLength: 400 }),
        })
        .map(({ type, len, tail }) => Buffer.concat([encodeHeader(type, len), tail])),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(hostile, { maxLength: 5 }), cutsArb, async (parts, cuts) => {
        const bytes = Buffer.concat(parts);
        const expected = expectedOutcome(bytes);
        const outcome = await readStream(chunks(bytes, cuts));
        expect(summary(outcome.messages)).toEqual(summary(expected.messages));
        if (expected.error) {
          expect(outcome.error).toBeInstanceOf(QrexecProtocolError);
          expect((outcome.error as Error).message).toMatch(expected.error);
        } else {
          expect(outcome.error).toBeUndefined();
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuses an oversize header at once, without waiting for its payload', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: 0xffffffff }),
        fc.integer({ min: READER_LIMIT + 1, max: 0xffffffff }),
        async (type, len) => {
          // The stream stays open: a reader that waited for the payload would never settle.
          const outcome = await readStream([encodeHeader(type, len)], false);
          expect(outcome.messages).toEqual([]);
          expect(outcome.error).toBeInstanceOf(QrexecProtocolError);
          expect((outcome.error as Error).message).toBe(`message 0x${type.toString(16)} too long (${len})`);
        },
      ),
      { numRuns: 50 },
    );
  });

  it('takes the largest messages a peer legitimately sends', async () => {
    const longest = [
      encodeMessage(
        MsgType.EXEC_CMDLINE,
        encodeExecParams({ connectDomain: 1, connectPort: 513 }, 'x'.repeat(MAX_QREXEC_CMD_LEN - 1)),
      ),
      encodeMessage(
        MsgType.TRIGGER_SERVICE4,
        encodeTrigger4('', 'dom0', 'SOCKET', 'a'.repeat(MAX_SERVICE_NAME_LEN - 1)),
      ),
      encodeMessage(MsgType.DATA_STDOUT, Buffer.alloc(MAX_DATA_CHUNK_V3, 0x41)),
    ];
    const outcome = await readStream(longest);
    expect(outcome.error).toBeUndefined();
    expect(outcome.messages.map((m) => m.payload.length)).toEqual([
      EXEC_PARAMS_SIZE + MAX_QREXEC_CMD_LEN,
      TRIGGER_SERVICE_PARAMS4_SIZE + MAX_SERVICE_NAME_LEN,
      MAX_DATA_CHUNK_V3,
    ]);
  });
});

/** A channel end that takes whatever the data phase sends. */
function sink(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

function collected(stream: PassThrough): Promise<Buffer> {
  const parts: Buffer[] = [];
  stream.on('data', (part: Buffer) => parts.push(part));
  return new Promise((resolve) => stream.on('end', () => resolve(Buffer.concat(parts))));
}

/** Upstream's max_data_chunk_size: the longest data payload the negotiated version allows. */
const chunkLimit = (version: number): number => (version >= 3 ? MAX_DATA_CHUNK_V3 : MAX_DATA_CHUNK_V2);

describe('data phase on hostile chunks', () => {
  const versionArb = fc.constantFrom(2, 3, 4);
  /** Lengths around both chunk limits and the reader's bound. */
  const lenArb = fc.oneof(
    fc.integer({ min: MAX_DATA_CHUNK_V2 - 1, max: MAX_DATA_CHUNK_V2 + 1 }),
    fc.integer({ min: MAX_DATA_CHUNK_V3 - 1, max: MAX_DATA_CHUNK_V3 + 1 }),
    fc.integer({ min: 1, max: READER_LIMIT }),
  );

  it('the caller takes service output chunks up to the negotiated limit and refuses longer ones', async () => {
    await fc.assert(
      fc.asyncProperty(
        versionArb,
        lenArb,
        fc.nat({ max: 255 }),
        cutsArb,
        async (version, len, fill, cuts) => {
          const payload = Buffer.alloc(len, fill);
          const stream = Buffer.concat([
            encodeMessage(MsgType.DATA_STDOUT, payload),
            encodeMessage(MsgType.DATA_STDOUT),
            encodeMessage(MsgType.DATA_EXIT_CODE, encodeExitCode(7)),
          ]);
          const input = new PassThrough();
          const stdout = new PassThrough();
          const output = collected(stdout);
          const calling = runCallerSide(sink(), new MessageReader(input), version, {
            stdin: null,
            stdout,
            stderr: new PassThrough().resume(),
          });
          for (const part of chunks(stream, cuts)) input.write(part);
          input.end();
          if (len <= chunkLimit(version)) {
            expect(await calling).toBe(7);
            expect((await output).equals(payload)).toBe(true);
          } else {
            await expect(calling).rejects.toThrow(QrexecProtocolError);
            await expect(calling).rejects.toThrow(`message 0x191 too long (${len})`);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the service side takes caller input chunks up to the negotiated limit and hangs up on longer ones', async () => {
    await fc.assert(
      fc.asyncProperty(versionArb, lenArb, async (version, len) => {
        const payload = Buffer.alloc(len, 0x42);
        const input = new PassThrough();
        const channel = sink();
        const stdin = new PassThrough();
        const received: Buffer[] = [];
        stdin.on('data', (part: Buffer) => received.push(part));
        let exit!: (code: number) => void;
        const serving = runServiceSide(channel, new MessageReader(input), version, {
          stdin,
          stdout: null,
          stderr: null,
          exitCode: new Promise<number>((resolve) => (exit = resolve)),
        });
        input.write(encodeMessage(MsgType.DATA_STDIN, payload));
        input.write(encodeMessage(MsgType.DATA_STDIN));
        for (let i = 0; i < 4; i++) await tick();
        if (len <= chunkLimit(version)) {
          expect(channel.destroyed).toBe(false);
          expect(stdin.writableEnded).toBe(true);
          expect(Buffer.concat(received).equals(payload)).toBe(true);
          exit(0);
          await serving;
        } else {
          // The caller broke the protocol: the channel and the service's input are closed unread.
          expect(channel.destroyed).toBe(true);
          expect(stdin.destroyed).toBe(true);
          expect(received).toEqual([]);
          exit(0);
          await expect(serving).rejects.toThrow(QrexecProtocolError);
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe('HELLO from a hostile peer', () => {
  it('settles on min(ours, theirs) for a 4-byte MSG_HELLO of version ≥ 2 and refuses anything else', async () => {
    const first = fc.oneof(
      fc.nat({ max: 0xffffffff }).map((v) => {
        const info = Buffer.alloc(4);
        info.writeUInt32LE(v);
        return { type: MsgType.HELLO as number, payload: info };
      }),
      fc.record({
        type: fc.oneof(fc.constant(MsgType.HELLO as number), fc.nat({ max: 0xffffffff })),
        payload: fc.uint8Array({ maxLength: 12 }).map((a) => Buffer.from(a)),
      }),
    );
    await fc.assert(
      fc.asyncProperty(first, fc.constantFrom(2, 3, 4), async ({ type, payload }, local) => {
        const input = new PassThrough();
        input.end(encodeMessage(type, payload));
        const negotiated = exchangeHello(sink(), new MessageReader(input), local).then(
          (version) => ({ version }),
          (error: unknown) => ({ error }),
        );
        const result = await negotiated;
        const remote = payload.length === 4 ? payload.readUInt32LE(0) : undefined;
        if (type === MsgType.HELLO && remote !== undefined && remote >= 2) {
          expect(result).toEqual({ version: Math.min(local, remote) });
        } else {
          expect('error' in result && result.error).toBeInstanceOf(QrexecProtocolError);
        }
      }),
      { numRuns: 200 },
    );
  });
});

/** Strings of `minLength` to `maxLength` characters out of `chars`. */
const stringOf = (chars: string, minLength: number, maxLength: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...chars), { minLength, maxLength }).map((a) => a.join(''));
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

describe('codec round trips', () => {
  it('lays out exec_params with a command line byte for byte and reads it back', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.string({ unit: 'binary', maxLength: 200 }).filter((s) => !s.includes('\0')),
        (connectDomain, connectPort, cmdline) => {
          const payload = encodeExecParams({ connectDomain, connectPort }, cmdline);
          const head = Buffer.alloc(8);
          head.writeUInt32LE(connectDomain, 0);
          head.writeUInt32LE(connectPort, 4);
          expect(payload.equals(Buffer.concat([head, Buffer.from(cmdline, 'utf8'), Buffer.from([0])]))).toBe(
            true,
          );
          const decoded = decodeExecParams(payload);
          expect([decoded.connectDomain, decoded.connectPort]).toEqual([connectDomain, connectPort]);
          expect(execCmdline(decoded.tail)).toBe(cmdline);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads back every valid trigger it sends, as the daemon accepts it', () => {
    const request = fc.record({
      version: fc.constantFrom(3, 4),
      source: stringOf(`${ALNUM}_.-@:`, 0, 63),
      target: stringOf(`${ALNUM}_.-@:`, 0, 63),
      requestId: stringOf(`${ALNUM}_. -`, 0, 31),
      service: fc
        .tuple(stringOf(`${ALNUM}_.-`, 1, 40), stringOf(`${ALNUM}_.-+`, 0, 40))
        .map(([name, rest]) => name + rest),
    });
    fc.assert(
      fc.property(request, ({ version, source, target, requestId, service }) => {
        const type = version === 4 ? MsgType.TRIGGER_SERVICE4 : MsgType.TRIGGER_SERVICE3;
        const payload =
          version === 4
            ? encodeTrigger4(source, target, requestId, service)
            : encodeTrigger3(target, requestId, service);
        const fixed = version === 4 ? TRIGGER_SERVICE_PARAMS4_SIZE : TRIGGER_SERVICE_PARAMS3_SIZE;
        expect(payload.length).toBe(fixed + service.length + 1);
        expect(payload.subarray(fixed).toString('latin1')).toBe(`${service}\0`);
        expect(() => checkAgentHeader({ type, len: payload.length }, version)).not.toThrow();
        expect(parseTrigger(type, payload)).toEqual({
          ok: true,
          request: {
            requestedSource: version === 4 ? source : '',
            target,
            serviceAndArg: service,
            requestId,
          },
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe('daemon validation of hostile agent messages', () => {
  /** Upstream's sanitize_message_from_agent: whether the daemon goes on after this header. */
  function upstreamAccepts(type: number, len: number, version: number): boolean {
    const trigger = (fixed: number): boolean => len > fixed && len - fixed <= MAX_SERVICE_NAME_LEN;
    switch (type) {
      case MsgType.TRIGGER_SERVICE:
        return version < 3 && len === TRIGGER_SERVICE_PARAMS_SIZE;
      case MsgType.TRIGGER_SERVICE3:
        return version >= 3 && trigger(TRIGGER_SERVICE_PARAMS3_SIZE);
      case MsgType.TRIGGER_SERVICE4:
        return version >= 4 && trigger(TRIGGER_SERVICE_PARAMS4_SIZE);
      case MsgType.CONNECTION_TERMINATED:
        return len === EXEC_PARAMS_SIZE;
      default:
        return false;
    }
  }

  const typeArb = fc.oneof(fc.constantFrom(...Object.values(MsgType)), fc.nat({ max: 0xffffffff }));
  const lenArb = fc.oneof(
    fc.nat({ max: 300 }),
    fc.integer({
      min: TRIGGER_SERVICE_PARAMS4_SIZE + MAX_SERVICE_NAME_LEN - 2,
      max: TRIGGER_SERVICE_PARAMS4_SIZE + MAX_SERVICE_NAME_LEN + 2,
    }),
    fc.integer({
      min: TRIGGER_SERVICE_PARAMS3_SIZE + MAX_SERVICE_NAME_LEN - 2,
      max: TRIGGER_SERVICE_PARAMS3_SIZE + MAX_SERVICE_NAME_LEN + 2,
    }),
    fc.nat({ max: 0xffffffff }),
  );

  it('kills the connection on exactly the headers upstream kills it on', () => {
    fc.assert(
      fc.property(typeArb, lenArb, fc.constantFrom(2, 3, 4), (type, len, version) => {
        let error: unknown;
        try {
          checkAgentHeader({ type, len }, version);
        } catch (caught) {
          error = caught;
        }
        if (upstreamAccepts(type, len, version)) expect(error).toBeUndefined();
        else expect(error).toBeInstanceOf(QrexecProtocolError);
      }),
      { numRuns: 1000 },
    );
  });

  it('turns any trigger body into a clean request or a refusal echoing the raw request id', () => {
    const body = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 80 }).map((a) => Buffer.from(a)),
      // Mostly printable names: the accepting paths get exercised, not only refusals.
      stringOf(`${ALNUM}+-_. /@:\0\xff`, 0, 80).map((s) => Buffer.from(`${s}\0`, 'latin1')),
    );
    const trigger = fc.record({
      type: fc.constantFrom(MsgType.TRIGGER_SERVICE, MsgType.TRIGGER_SERVICE3, MsgType.TRIGGER_SERVICE4),
      fields: fc.uint8Array({ minLength: 160, maxLength: 160 }).map((a) => Buffer.from(a)),
      // A valid request id half of the time, so that the name checks are reached.
      id: fc.oneof(
        fc.uint8Array({ minLength: 32, maxLength: 32 }).map((a) => Buffer.from(a)),
        stringOf(`${ALNUM}_. -`, 0, 31).map(encodeServiceParams),
      ),
      body,
    });
    fc.assert(
      fc.property(trigger, ({ type, fields, id, body }) => {
        const fixed =
          type === MsgType.TRIGGER_SERVICE4
            ? TRIGGER_SERVICE_PARAMS4_SIZE
            : type === MsgType.TRIGGER_SERVICE3
              ? TRIGGER_SERVICE_PARAMS3_SIZE
              : TRIGGER_SERVICE_PARAMS_SIZE;
        const idOffset = fixed - 32;
        const payload =
          type === MsgType.TRIGGER_SERVICE
            ? Buffer.from(fields.subarray(0, fixed))
            : Buffer.concat([fields.subarray(0, fixed), body]);
        id.copy(payload, idOffset);
        const version = type === MsgType.TRIGGER_SERVICE ? 2 : 4;
        checkAgentHeader({ type, len: payload.length }, version);
        const parsed = parseTrigger(type, payload);
        if (parsed.ok) {
          const { requestedSource, target, serviceAndArg, requestId } = parsed.request;
          expect(serviceAndArg).toMatch(/^[A-Za-z0-9_.-][A-Za-z0-9_.+-]*$/);
          expect(target).toMatch(/^[A-Za-z0-9_.@:-]{0,63}$/);
          expect(requestedSource).toMatch(/^[A-Za-z0-9_.@:-]{0,63}$/);
          expect(requestId).toMatch(/^[A-Za-z0-9_. -]{0,31}$/);
          expect(payload.subarray(idOffset, idOffset + 32).equals(encodeServiceParams(requestId))).toBe(true);
        } else {
          expect(parsed.requestId.equals(payload.subarray(idOffset, idOffset + 32))).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
