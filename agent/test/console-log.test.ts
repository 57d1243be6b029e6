import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const CONSOLE_LOG = fileURLToPath(new URL('../dist/console-log.js', import.meta.url));
const LINES = 3_000;

/**
 * A program logging 3,000 lines of 100 bytes (300 KB) to a stderr pipe nobody reads: the pipe
 * takes 64 KB, so a blocking write would stop it there, as a container's console nobody reads
 * stops its writers. It must get to the end and say so on stdout.
 */
const SCRIPT = `
const { consoleLog } = await import(process.argv[1]);
const log = consoleLog('test');
for (let i = 0; i < ${LINES}; i++) log(String(i).padStart(92, '.'));
process.stdout.write('logged all\\n');
`;

it('logs on without blocking when nobody reads its console, and loses what does not fit', async () => {
  if (!existsSync(CONSOLE_LOG)) throw new Error('build the agent first: npx tsc -b agent');
  const dir = mkdtempSync(join(tmpdir(), 'console-log-'));
  const fifo = join(dir, 'console');
  execFileSync('mkfifo', [fifo]);
  // The reader that never reads, then the program's end of it (node's own 'pipe' is a socket).
  const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const console = openSync(fifo, constants.O_WRONLY);
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, CONSOLE_LOG], {
    stdio: ['ignore', 'pipe', console],
  });
  closeSync(console);
  try {
    let stdout = '';
    if (!child.stdout) throw new Error('the child has no stdout pipe');
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect([code, stdout]).toEqual([0, 'logged all\n']);
    // Some of it was written, the rest lost; what got through is whole lines.
    const got: Buffer[] = [];
    const buffer = Buffer.alloc(65_536);
    for (let n; (n = readSync(reader, buffer)) > 0;) got.push(Buffer.from(buffer.subarray(0, n)));
    const lines = Buffer.concat(got).toString().split('\n').slice(0, -1);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(LINES);
    for (const line of lines) expect(line).toMatch(/^test: \.+\d+$/);
  } finally {
    child.kill('SIGKILL');
    closeSync(reader);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
