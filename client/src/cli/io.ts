/** Where the CLI reads and writes; process streams in production, buffers in tests. */
export interface CliIo {
  /** Text from most commands; bytes where a command passes a service's output through (run --pass-io). */
  stdout: { write(data: string | Uint8Array): unknown };
  stderr: { write(data: string | Uint8Array): unknown };
  stdin: NodeJS.ReadableStream;
  env: Readonly<Record<string, string | undefined>>;
}

/** Ends the command with this exit status; anything worth saying has been printed already. */
export class ExitStatus extends Error {
  constructor(readonly code: number) {
    super(`exit status ${code}`);
  }
}

/** Bad invocation (exit status 2), reported like commander's own usage errors. */
export class UsageError extends Error {}
