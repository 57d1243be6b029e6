import { describe, expect, it } from 'vitest';

import { CommandError, describeFailure, runChecked, runCommand } from '../src/run-command.js';

const MB100 = 100 * 1024 * 1024;
const LIMIT = 64 * 1024;

describe('runCommand', () => {
  it('reads 100 MB on each stream to the end, keeping the head of stdout and the tail of stderr', async () => {
    // The stderr marker is written last: only a kept tail holds it, and only a drained pipe lets the
    // child get there and exit (an unread pipe would block it forever).
    const script = `yes out | head -c ${MB100}; yes err | head -c ${MB100} >&2; printf 'last words\\n' >&2; exit 3`;
    const r = await runCommand('sh', ['-c', script], { stdoutLimit: LIMIT, stderrLimit: LIMIT });
    expect(r.code).toBe(3);
    expect(r.signal).toBeNull();
    expect(r.stdout).toBe('out\n'.repeat(LIMIT / 4));
    expect(r.stdoutTruncated).toBe(true);
    expect(Buffer.byteLength(r.stderr)).toBe(LIMIT);
    expect(r.stderr.endsWith('err\nlast words\n')).toBe(true);
    expect(describeFailure(r)).toMatch(/^Command sh -c '.*' returned non-zero exit status 3: err\n/s);
    expect(describeFailure(r).endsWith('err\nlast words')).toBe(true);
  });

  it('keeps everything a quiet command prints, byte for byte', async () => {
    const r = await runCommand('sh', ['-c', "printf 'a\\0b\\n\\303\\251'; printf warn >&2"]);
    expect(r).toEqual({
      command: `sh -c 'printf '"'"'a\\0b\\n\\303\\251'"'"'; printf warn >&2'`,
      code: 0,
      signal: null,
      stdout: 'a\0b\né',
      stdoutTruncated: false,
      stderr: 'warn',
    });
  });

  it('names the signal that killed a command', async () => {
    const r = await runCommand('sh', ['-c', 'echo dying >&2; kill -KILL $$']);
    expect([r.code, r.signal]).toEqual([null, 'SIGKILL']);
    expect(describeFailure(r, "Command 'x'")).toBe("Command 'x' was killed by SIGKILL: dying");
  });

  it('rejects with a CommandError when the program cannot be started', async () => {
    const err = await runCommand('/nonexistent/tool', ['a b']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as Error).message).toBe("Cannot run /nonexistent/tool 'a b': spawn /nonexistent/tool ENOENT");
  });
});

describe('runChecked', () => {
  it('resolves with the stdout of a command that succeeds', async () => {
    await expect(runChecked('printf', ['%s', 'ok'])).resolves.toBe('ok');
  });

  it('refuses a failure, and a stdout larger than the caller keeps', async () => {
    const failed = await runChecked('sh', ['-c', 'echo no >&2; exit 2']).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(CommandError);
    expect((failed as CommandError).message).toBe(
      "Command sh -c 'echo no >&2; exit 2' returned non-zero exit status 2: no",
    );
    const err = await runChecked('head', ['-c', '5000', '/dev/zero'], { stdoutLimit: 4096 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).message).toBe('Command head -c 5000 /dev/zero printed more than 4096 bytes');
    expect((err as CommandError).result?.stdout).toBe('\0'.repeat(4096));
  });
});
