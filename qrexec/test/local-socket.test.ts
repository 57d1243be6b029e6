import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MessageReader,
  MsgType,
  QREXEC_CLIENT_PROTOCOL_VERSION,
  callLocalSocket,
  closeLocalSocket,
  decodePeerInfo,
  listenLocalSocket,
  localSocketName,
  type LocalCommandRunner,
} from '../src/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-local-socket-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function call(
  path: string,
  cmdline: string,
  stdin: Buffer,
): Promise<{ exitCode: number; stdout: Buffer; stderr: Buffer }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const collected = Promise.all([collect(stdout), collect(stderr)]);
  const exitCode = await callLocalSocket(path, cmdline, { stdin: Readable.from([stdin]), stdout, stderr });
  stdout.end();
  stderr.end();
  const [out, err] = await collected;
  return { exitCode, stdout: out, stderr: err };
}

/** Echoes the command line and stdin to stdout, a note to stderr, and exits 7. */
const echo: LocalCommandRunner = async (cmdline, { stdin, stdout, stderr }) => {
  stdout.write(`${cmdline}|`);
  stdin.pipe(stdout as Writable);
  await new Promise((resolve) => stdin.on('end', resolve));
  stderr.end('note');
  return 7;
};

describe('local qrexec socket', () => {
  it('is a 0600 socket named qrexec.<name>, removed on close', async () => {
    const path = join(dir, 'run', localSocketName('work'));
    expect(path.endsWith('/qrexec.work')).toBe(true);
    const server = await listenLocalSocket(path, echo);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    closeLocalSocket(server);
    expect(existsSync(path)).toBe(false);
  });

  it('says MSG_HELLO with the client protocol version first', async () => {
    const path = join(dir, 'qrexec.work');
    const server = await listenLocalSocket(path, echo);
    const socket = connect(path);
    const hello = await new MessageReader(socket).expect();
    expect(hello.type).toBe(MsgType.HELLO);
    expect(decodePeerInfo(hello.payload)).toBe(QREXEC_CLIENT_PROTOCOL_VERSION);
    socket.destroy();
    closeLocalSocket(server);
  });

  it('relays the command line, stdin, stdout, stderr and exit code, in chunks over 64 KiB', async () => {
    const path = join(dir, 'qrexec.work');
    const server = await listenLocalSocket(path, echo);
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const reply = await call(path, 'DEFAULT:QUBESRPC test.Echo+ dom0', data);
    expect(reply.exitCode).toBe(7);
    expect(reply.stderr.toString()).toBe('note');
    expect(reply.stdout.equals(Buffer.concat([Buffer.from('DEFAULT:QUBESRPC test.Echo+ dom0|'), data]))).toBe(
      true,
    );
    closeLocalSocket(server);
  });

  it('reports a call that cannot be made as exit code 125 with the reason on stderr', async () => {
    const path = join(dir, 'qrexec.work');
    const server = await listenLocalSocket(path, () => Promise.reject(new Error('agent gone')));
    const reply = await call(path, 'DEFAULT:QUBESRPC test.Echo+ dom0', Buffer.from('x'));
    expect(reply).toEqual({
      exitCode: 125,
      stdout: Buffer.alloc(0),
      stderr: Buffer.from('qrexec: agent gone\n'),
    });
    closeLocalSocket(server);
  });

  it('fails to call a domain without a socket', async () => {
    await expect(call(join(dir, 'qrexec.none'), 'DEFAULT:QUBESRPC x+ dom0', Buffer.alloc(0))).rejects.toThrow(
      /ENOENT/,
    );
  });
});
