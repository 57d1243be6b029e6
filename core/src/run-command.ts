import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

/** What a tool may print before the daemon stops keeping it: enough for any message, far below memory. */
export const DEFAULT_OUTPUT_LIMIT = 1024 * 1024;

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Bytes of stdout kept, from the start; what comes after is read and dropped. */
  readonly stdoutLimit?: number;
  /** Bytes of stderr kept, from the end (the last lines say why a tool failed). */
  readonly stderrLimit?: number;
}

export interface RunResult {
  /** How the command is named in messages: its argv, quoted as a shell would need it. */
  readonly command: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  /** stdout went past its limit: `stdout` is only its start. */
  readonly stdoutTruncated: boolean;
  readonly stderr: string;
}

/** A command that could not run, failed, or printed more than the caller keeps. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly result: RunResult | undefined,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

/** Quotes an argv word only when a shell would split or expand it. */
function quoteWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'"'"'`)}'`;
}

/** Keeps at most `limit` bytes of a stream, its head or its tail, while reading all of it. */
class Bounded {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  truncated = false;

  constructor(
    private readonly limit: number,
    private readonly keep: 'head' | 'tail',
  ) {}

  add(chunk: Buffer): void {
    if (this.keep === 'head') {
      const room = this.limit - this.kept;
      if (chunk.length > room) this.truncated = true;
      if (room <= 0) return;
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      // A copy, so the pipe's larger buffer is not held alive by a slice.
      this.chunks.push(Buffer.from(part));
      this.kept += part.length;
      return;
    }
    this.chunks.push(chunk);
    this.kept += chunk.length;
    // Whole chunks that lie entirely before the last `limit` bytes are dropped as they go.
    while (this.chunks.length > 1 && this.kept - (this.chunks[0] as Buffer).length >= this.limit) {
      this.kept -= (this.chunks.shift() as Buffer).length;
      this.truncated = true;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    if (all.length <= this.limit) return all.toString('utf8');
    this.truncated = true;
    return all.subarray(all.length - this.limit).toString('utf8');
  }
}

function collect(stream: Readable, into: Bounded): void {
  stream.on('data', (d: Buffer) => into.add(d));
}

/**
 * Runs a program (no shell) to its exit, stdin closed, keeping a bounded part of what it prints:
 * a tool, or a hook an administrator configured, that writes without end costs reading time, not
 * the daemon's memory. Resolves with how it ended, whatever the exit status; rejects with a
 * CommandError only when it cannot be started.
 */
export function runCommand(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const command = [file, ...args].map(quoteWord).join(' ');
  const stdout = new Bounded(options.stdoutLimit ?? DEFAULT_OUTPUT_LIMIT, 'head');
  const stderr = new Bounded(options.stderrLimit ?? DEFAULT_OUTPUT_LIMIT, 'tail');
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.env ? { env: options.env } : {}),
    });
    collect(child.stdout, stdout);
    collect(child.stderr, stderr);
    child.on('error', (e) => reject(new CommandError(`Cannot run ${command}: ${e.message}`, undefined)));
    // 'close' comes after both pipes are drained, so nothing printed is lost to a race with 'exit'.
    child.on('close', (code, signal) =>
      resolve({
        command,
        code,
        signal,
        stdout: stdout.text(),
        stdoutTruncated: stdout.truncated,
        stderr: stderr.text(),
      }),
    );
  });
}

/** How a command ended, as one line: its exit status or signal, then the kept end of its stderr. */
export function describeFailure(result: RunResult, what = `Command ${result.command}`): string {
  const how =
    result.signal !== null
      ? `was killed by ${result.signal}`
      : `returned non-zero exit status ${String(result.code)}`;
  const why = result.stderr.trim();
  return why === '' ? `${what} ${how}` : `${what} ${how}: ${why}`;
}

/**
 * Runs a command that must succeed and print no more than the caller keeps; resolves with its
 * stdout. A failure is a CommandError naming the command, its status or signal and its stderr.
 */
export async function runChecked(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) throw new CommandError(describeFailure(result), result);
  if (result.stdoutTruncated) {
    throw new CommandError(
      `Command ${result.command} printed more than ${options.stdoutLimit ?? DEFAULT_OUTPUT_LIMIT} bytes`,
      result,
    );
  }
  return result.stdout;
}
