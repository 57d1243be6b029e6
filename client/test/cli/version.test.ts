import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const QVM = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

describe('qvm --version', () => {
  it("prints the client package's version and needs no daemon", async () => {
    if (!existsSync(QVM)) throw new Error(`${QVM} is missing: run "npx tsc -b" (npm test does)`);
    const { version } = JSON.parse(
      await readFile(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as {
      version: string;
    };
    const { stdout, stderr } = await run(process.execPath, [QVM, '--version'], {
      env: { ...process.env, ODYSSEY_SOCKET: '/nonexistent/qubesd.sock' },
    });
    expect(stdout).toBe(`${version}\n`);
    expect(stderr).toBe('');
  });
});
