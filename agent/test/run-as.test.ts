/**
 * Calls run as the user dom0 names when the agent switches users (the Debian template's agent):
 * real runuser, real processes. Needs root and runuser; the user is `nobody`, which every Linux has.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runAsCommand } from '../src/run-as.js';
import { QrexecWorld } from './fixture.js';

const isRoot = process.getuid?.() === 0;
const hasRunuser = spawnSync('runuser', ['--version'], { stdio: 'ignore' }).status === 0;
const canSwitch = isRoot && hasRunuser;
if (!canSwitch) console.log(`agent user switching not run: ${isRoot ? 'runuser is missing' : 'not root'}`);

describe('runAsCommand', () => {
  it('wraps a call in runuser only when the agent switches users and must', () => {
    expect(runAsCommand('user', true, 0)).toEqual(['runuser', '-u', 'user', '--']);
    expect(runAsCommand('root', true, 0)).toEqual([]);
    expect(runAsCommand('user', false, 0)).toEqual([]);
  });
});

describe.skipIf(!canSwitch)('an agent that switches users', () => {
  let world: QrexecWorld;

  beforeEach(async () => {
    world = await QrexecWorld.create();
    // runuser's user must reach the service scripts.
    await chmod(world.root, 0o755);
    await mkdir(join(world.root, 'rpc-config'));
    await world.addDomain('work', 3, { switchUsers: true, rpcConfigDirs: [join(world.root, 'rpc-config')] });
    await world.addDomain('plain', 5);
    for (const vm of ['work', 'plain']) {
      const dir = world.domain(vm).serviceDir;
      await chmod(dir, 0o755);
      await world.addScript(dir, 'test.Who', '#!/bin/sh\nid -un\n');
    }
  });

  afterEach(async () => {
    await world.close();
  });

  const who = async (vm: string, user: string) => {
    const result = await world.domain(vm).daemon.callService('test.Who', { stdin: Buffer.alloc(0), user });
    return { stdout: result.stdout.toString(), exitCode: result.exitCode };
  };

  it('runs a call as the named user, root included', async () => {
    expect(await who('work', 'nobody')).toEqual({ stdout: 'nobody\n', exitCode: 0 });
    expect(await who('work', 'root')).toEqual({ stdout: 'root\n', exitCode: 0 });
  });

  it("runs a service as the user its configuration forces, whoever dom0 names (upstream's qubes.VMRootShell)", async () => {
    await writeFile(join(world.root, 'rpc-config', 'test.Who'), "force-user='root'\n");
    expect(await who('work', 'nobody')).toEqual({ stdout: 'root\n', exitCode: 0 });
    // A configuration upstream refuses fails the call, rather than running it as dom0's user.
    await writeFile(join(world.root, 'rpc-config', 'test.Who'), 'force-user=root\n');
    expect(await who('work', 'nobody')).toEqual({ stdout: '', exitCode: 125 });
  });

  it('without switching runs every call as the agent', async () => {
    expect(await who('plain', 'nobody')).toEqual({ stdout: 'root\n', exitCode: 0 });
  });
});
