import { PolicySyntaxError, type PolicyLocation } from './errors.js';
import { PolicyFileNotText, PolicyFileTooLarge, type PolicyFiles } from './files.js';

/**
 * What one load may cost. Upstream has no limits (a long include chain
 * exhausts Python's recursion); ours keep a hostile or broken tree from
 * overflowing the stack or making a load take exponential time (a file
 * including the next one twice, 32 deep). The default admin policy nests 3
 * deep and loads a few hundred files.
 */
export const POLICY_LIMITS = {
  /** Files open at once along one include chain, the top-level file included. */
  maxIncludeDepth: 32,
  /** Bytes of one file. */
  maxFileBytes: 1024 * 1024,
  /** Bytes parsed in one load, a file counting each time it is included. */
  maxLoadBytes: 16 * 1024 * 1024,
  /** Files parsed in one load, a file counting each time it is included. */
  maxFileLoads: 10_000,
} as const;

/**
 * The include chain of one load and what it has cost so far. Every refusal
 * is a PolicySyntaxError located at the line that asked for the file.
 */
export class LoadBudget {
  private readonly loading: string[] = [];
  private bytes = 0;
  private loads = 0;

  constructor(private readonly files: PolicyFiles) {}

  /** Reads `file` for `body`, refusing a loop, a chain too deep, a file too large or a load over budget. */
  withFile(file: string, from: PolicyLocation | null, body: (text: string) => void): void {
    const where = from ?? { file, line: null };
    if (this.loading.includes(file)) throw new PolicySyntaxError(where, `include loop: ${file}`);
    if (this.loading.length >= POLICY_LIMITS.maxIncludeDepth)
      throw new PolicySyntaxError(
        where,
        `includes nested over ${POLICY_LIMITS.maxIncludeDepth} deep at ${file}`,
      );
    if (++this.loads > POLICY_LIMITS.maxFileLoads)
      throw new PolicySyntaxError(where, `over ${POLICY_LIMITS.maxFileLoads} files loaded at ${file}`);
    const text = this.read(file, where);
    if (text === undefined) throw new PolicySyntaxError(where, `not a file: ${file}`);
    this.bytes += Buffer.byteLength(text);
    if (this.bytes > POLICY_LIMITS.maxLoadBytes)
      throw new PolicySyntaxError(where, `policy over ${POLICY_LIMITS.maxLoadBytes} bytes in all at ${file}`);
    this.loading.push(file);
    try {
      body(text);
    } finally {
      this.loading.pop();
    }
  }

  /** The file's text, or undefined when it is not a regular file. */
  read(file: string, where: PolicyLocation): string | undefined {
    try {
      return this.files.readFile(file, POLICY_LIMITS.maxFileBytes);
    } catch (err) {
      throw readError(where, file, err);
    }
  }
}

/** A file or directory that exists but cannot be read, located at the line that wanted it. */
export function readError(where: PolicyLocation, file: string, err: unknown): PolicySyntaxError {
  if (err instanceof PolicyFileTooLarge || err instanceof PolicyFileNotText)
    return new PolicySyntaxError(where, err.message);
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string') return new PolicySyntaxError(where, `cannot read ${file}: ${e.code}`);
  throw err;
}
