/**
 * qvm console on a real pty: socat holds the master side, as QEMU or xenconsoled holds a serial
 * console's, and a scripted qubesd names the slave in its admin.vm.Console reply. qvm runs as its
 * own process, as a user runs it.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, describe, expect, it } from 'vitest';

import { FakeQubesd, cannedResponder } from '../helpers/fake-qubesd.js';

const QVM = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const SOCAT = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
if (!SOCAT) console.log('qvm console tests skipped: socat (which makes the pty) is not installed');

const LIST = 'admin.vm.List+ dom0 name dom0\0';
const CONSOLE = 'admin.vm.Console+ dom0 name work\0';

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

/** Resolves once `stream` has carried `text` (the test's timeout bounds the wait). */
function received(stream: NodeJS.ReadableStream, text: string): Promise<string> {
  let seen = '';
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString('latin1');
      if (!seen.includes(text)) return;
      stream.off('data', onData);
      resolve(seen);
    };
    stream.on('data', onData);
  });
}

const exited = (child: ChildProcessWithoutNullStreams): Promise<number | null> =>
  new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });

/** A pty whose master socat relays to its stdio; resolves with socat and the slave's path. */
async function consolePty(): Promise<{ socat: ChildProcessWithoutNullStreams; path: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'odyssey-console-'));
  const link = join(dir, 'pty');
  const socat = spawn('socat', [`PTY,link=${link},raw,echo=0`, 'STDIO']);
  cleanups.push(async () => {
    socat.kill();
    await exited(socat);
    await rm(dir, { recursive: true, force: true });
  });
  let stderr = '';
  socat.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  while (!existsSync(link)) {
    if (socat.exitCode !== null) throw new Error(`socat exited: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { socat, path: await realpath(link) };
}

async function qvmConsole(path: string): Promise<ChildProcessWithoutNullStreams> {
  const qubesd = await FakeQubesd.start(
    cannedResponder({
      [LIST]: '0\0dom0 class=AdminVM state=Running\nwork class=AppVM state=Running\n',
      [CONSOLE]: `0\0${path}`,
    }),
  );
  cleanups.push(() => qubesd.close());
  const qvm = spawn(process.execPath, [QVM, '--socket', qubesd.socketPath, 'console', 'work']);
  cleanups.push(() => {
    qvm.kill();
  });
  return qvm;
}

describe.skipIf(!SOCAT)('qvm console', () => {
  it('shows what the console prints, sends what is typed, and detaches at Ctrl-]', async () => {
    const { socat, path } = await consolePty();
    const qvm = await qvmConsole(path);
    expect(await received(qvm.stderr, 'Escape character is ^]')).toContain(
      `Connected to the console of work (${path})`,
    );
    const shown = received(qvm.stdout, 'login:');
    socat.stdin.write('[    0.000000] Linux version 6.1\r\nwork login: ');
    expect(await shown).toBe('[    0.000000] Linux version 6.1\r\nwork login: ');
    const typed = received(socat.stdout, 'user\r');
    qvm.stdin.write('user\r');
    expect(await typed).toBe('user\r');
    // Bytes before the escape still reach the console; the escape itself does not.
    const last = received(socat.stdout, 'ls');
    qvm.stdin.write('ls\x1d');
    expect(await last).toBe('ls');
    expect(await exited(qvm)).toBe(0);
  });

  it('ends when the console goes away (the domain stopped)', async () => {
    const { socat, path } = await consolePty();
    const qvm = await qvmConsole(path);
    await received(qvm.stderr, 'Escape character is ^]');
    socat.kill();
    expect(await exited(qvm)).toBe(0);
  });

  it('names the reason when the daemon has no console for the qube', async () => {
    const qubesd = await FakeQubesd.start(
      cannedResponder({
        [LIST]: '0\0dom0 class=AdminVM state=Running\nwork class=AppVM state=Running\n',
        [CONSOLE]:
          '2\0QubesNotImplementedError\0\0Console of work is not available with backend process: the backend has no console support\0',
      }),
    );
    cleanups.push(() => qubesd.close());
    const qvm = spawn(process.execPath, [QVM, '--socket', qubesd.socketPath, 'console', 'work']);
    let stderr = '';
    qvm.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await exited(qvm)).toBe(1);
    expect(stderr).toBe(
      'Console of work is not available with backend process: the backend has no console support\n',
    );
  });
});
