import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Daemon } from '../../src/daemon/daemon.js';
import { rawCall, request } from '../support/harness.js';
import { FakeVmm } from '../support/fake-vmm.js';

let daemon: Daemon | null = null;
let dir = '';
afterEach(async () => {
  await daemon?.stop();
  daemon = null;
  await rm(dir, { recursive: true, force: true });
});

describe('a policy tree that cannot be loaded', () => {
  it('an include chain of 2,000 does not stop odysseyd: it logs the reason, lets a qube see nothing, serves dom0, and recovers on a fix', async () => {
    dir = await mkdtemp(join(tmpdir(), 'odyssey-policy-fail-'));
    const policyDir = join(dir, 'policy.d');
    await mkdir(join(policyDir, 'chain'), { recursive: true });
    await writeFile(
      join(policyDir, '30-test.policy'),
      '!include chain/0\nadmin.vm.List * mgmt @adminvm allow target=dom0\n',
    );
    for (let i = 0; i < 2000; i++)
      await writeFile(join(policyDir, 'chain', String(i)), `!include chain/${i + 1}\n`);
    await writeFile(join(policyDir, 'chain', '2000'), '');
    const lines: string[] = [];
    let logged: ((line: string) => void) | undefined;
    daemon = await Daemon.start({
      socketPath: join(dir, 'q.sock'),
      stateDir: join(dir, 'state'),
      backend: new FakeVmm(),
      policyDirs: [policyDir],
      log: (level, message) => {
        lines.push(`${level} ${message}`);
        logged?.(`${level} ${message}`);
      },
    });
    const sock = join(dir, 'q.sock');
    const reason = `${policyDir}/chain/30:1: includes nested over 32 deep at ${policyDir}/chain/31`;
    expect(lines).toContain(`error qrexec policy not loaded, denying every call: ${reason}`);
    expect(
      (
        await rawCall(sock, request('admin.vm.Create.StandaloneVM', 'dom0', '', 'name=mgmt label=green'))
      ).toString(),
    ).toBe('0\0');
    const list = (): Promise<string> =>
      rawCall(sock, request('admin.vm.List', 'dom0', '', '', 'mgmt')).then((r) => r.toString('latin1'));
    // admin.vm.List shows a caller what the policy lets it see: with no policy, nothing.
    expect(await list()).toBe('0\0');

    const recovered = new Promise<void>((resolve) => {
      logged = (line) => {
        if (line === 'info qrexec policy loaded again') resolve();
      };
    });
    await writeFile(join(policyDir, 'chain', '3'), '');
    await recovered;
    expect(await list()).toMatch(/^0\0dom0 class=AdminVM state=Running uuid=0{8}-0{4}-0{4}-0{4}-0{12}\n$/);
  });
});
