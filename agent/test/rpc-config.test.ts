/** A service's configuration as upstream's qrexec reads it for force-user: real files in a temporary directory. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcConfigError, forcedUser } from '../src/rpc-config.js';

let root: string;
let first: string;
let second: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'odyssey-rpc-config-'));
  first = join(root, 'run');
  second = join(root, 'etc');
  await mkdir(first);
  await mkdir(second);
});

afterAll(() => rm(root, { recursive: true, force: true }));

const config = (dir: string, name: string, text: string): Promise<void> => writeFile(join(dir, name), text);

describe('forcedUser', () => {
  it("reads upstream's qubes.VMRootShell configuration, comments and other keys around it", async () => {
    await config(second, 'qubes.VMRootShell', "force-user='root'\n");
    expect(await forcedUser([first, second], 'qubes.VMRootShell')).toBe('root');
    await config(second, 'test.Keys', "# comment\n\nwait-for-session = 1\nforce-user = 'user'  \r\n");
    expect(await forcedUser([first, second], 'test.Keys')).toBe('user');
  });

  it('takes SERVICE+ARG before SERVICE, and the first directory before the next', async () => {
    await config(second, 'test.Arg', "force-user='root'\n");
    await config(second, 'test.Arg+x', "force-user='user'\n");
    expect(await forcedUser([first, second], 'test.Arg+x')).toBe('user');
    expect(await forcedUser([first, second], 'test.Arg+y')).toBe('root');
    await config(first, 'test.Arg', 'skip-service-descriptor = true\n');
    // The first file found is the whole configuration, even without force-user.
    expect(await forcedUser([first, second], 'test.Arg+y')).toBeUndefined();
    expect(await forcedUser([first, second], 'test.None')).toBeUndefined();
  });

  it('refuses what upstream refuses: a bad line, a value not in single quotes, force-user twice', async () => {
    for (const [name, text] of [
      ['test.Indent', "  force-user='root'\n"],
      ['test.Section', '[section]\n'],
      ['test.Double', 'force-user="root"\n'],
      ['test.Bare', 'force-user=root\n'],
      ['test.Empty', "force-user=''\n"],
      ['test.Twice', "force-user='root'\nforce-user='user'\n"],
      ['test.Nul', "force-user='ro\0ot'\n"],
    ] as const) {
      await config(second, name, text);
      await expect(forcedUser([second], name), name).rejects.toBeInstanceOf(RpcConfigError);
    }
  });

  it('refuses a file over 64 KiB instead of reading it whole', async () => {
    await config(second, 'test.Big', `# ${'x'.repeat(64 * 1024)}\nforce-user='root'\n`);
    await expect(forcedUser([second], 'test.Big')).rejects.toThrow(/larger than 65536 bytes/);
  });
});
