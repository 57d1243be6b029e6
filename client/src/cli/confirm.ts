import { createInterface } from 'node:readline';

import type { CliContext } from './context.js';

/** y/N on stdin; the question goes to stderr so that stdout stays clean for scripts. */
export async function confirm(ctx: CliContext, lines: readonly string[]): Promise<boolean> {
  for (const line of lines) ctx.printError(line);
  const prompt = createInterface({ input: ctx.io.stdin, terminal: false });
  try {
    ctx.io.stderr.write('Are you sure? [y/N] ');
    const answer = await new Promise<string>((resolve) => {
      prompt.once('line', resolve);
      prompt.once('close', () => resolve(''));
    });
    return answer.trim().toLowerCase() === 'y';
  } finally {
    prompt.close();
  }
}
