import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { runQvmRecorded, type QvmOptions } from '../helpers/run-qvm.js';
import { SYSTEM } from '../fixtures/system.js';

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget(SYSTEM);
});
afterAll(() => target.close());

const run = (args: string[], options?: QvmOptions) => runQvmRecorded(target, args, options);

const LIST = 'admin.vm.List+ dom0 name dom0\0';

describe('qvm start', () => {
  it('checks the state, starts a halted qube, and reports the failure per qube', async () => {
    expect(await run(['start', 'newvm'])).toEqual({
      code: 1,
      stdout: '',
      stderr: 'Starting qube failed: newvm: Missing file: /var/lib/qubes/vm-kernels/6.6.1/vmlinuz\n',
      requests: [LIST, 'admin.vm.CurrentState+ dom0 name newvm\0', 'admin.vm.Start+ dom0 name newvm\0'],
    });
  });

  it('refuses a qube that is not halted unless --skip-if-running', async () => {
    expect(await run(['start', 'work'])).toMatchObject({
      code: 1,
      stderr: 'Starting qube failed: work: Domain is already running\n',
      requests: [LIST, 'admin.vm.CurrentState+ dom0 name work\0'],
    });
    expect(await run(['start', '--skip-if-running', 'work'])).toMatchObject({ code: 0, stderr: '' });
  });
});

describe('qvm shutdown', () => {
  it('ignores QubesVMNotStartedError like qvm-shutdown', async () => {
    expect(await run(['shutdown', 'newvm'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
      requests: [LIST, 'admin.vm.Shutdown+ dom0 name newvm\0'],
    });
  });

  it('passes --force and --wait as the argument', async () => {
    expect((await run(['shutdown', '--wait', 'sys-net'])).requests[1]).toBe(
      'admin.vm.Shutdown+wait dom0 name sys-net\0',
    );
    expect((await run(['shutdown', '--force', '--wait', 'sys-net'])).requests[1]).toBe(
      'admin.vm.Shutdown+force+wait dom0 name sys-net\0',
    );
  });
});

describe('qvm kill / pause / unpause', () => {
  it('acts on every named qube and reports each failure', async () => {
    expect(await run(['kill', 'newvm', 'sys-net'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "Failed to kill: newvm: Domain is powered off: 'newvm'\n",
      requests: [LIST, 'admin.vm.Kill+ dom0 name newvm\0', 'admin.vm.Kill+ dom0 name sys-net\0'],
    });
    expect((await run(['pause', 'sys-net'])).requests).toEqual([LIST, 'admin.vm.Pause+ dom0 name sys-net\0']);
    expect((await run(['unpause', 'work'])).requests).toEqual([LIST, 'admin.vm.Unpause+ dom0 name work\0']);
  });

  it('checks every name before acting on any', async () => {
    expect(await run(['pause', 'sys-net', 'nosuch'])).toMatchObject({
      code: 2,
      stderr: "error: no such domain: 'nosuch'\n",
      requests: [LIST],
    });
  });
});

describe('qvm remove', () => {
  it('removes without asking with -f', async () => {
    expect(await run(['remove', '-f', 'newvm'])).toMatchObject({
      code: 0,
      requests: [LIST, 'admin.vm.Remove+ dom0 name newvm\0'],
    });
  });

  it('asks for confirmation otherwise', async () => {
    const yes = await run(['remove', 'newvm'], { stdin: 'y\n' });
    expect(yes).toMatchObject({ code: 0, requests: [LIST, 'admin.vm.Remove+ dom0 name newvm\0'] });
    expect(yes.stderr).toBe(
      'This will completely remove the selected VM(s)...\n  newvm\nAre you sure? [y/N] ',
    );
    expect(await run(['remove', 'newvm'], { stdin: '\n' })).toMatchObject({ code: 1, requests: [LIST] });
  });

  it('reports a qube in use, and refuses dom0 outright', async () => {
    expect(await run(['remove', '-f', 'debian-12'])).toMatchObject({
      code: 1,
      stderr: "Domain is in use: 'debian-12';  see 'journalctl -u qubesd -e' in dom0 for details\n",
    });
    expect(await run(['remove', '-f', 'dom0'])).toEqual({
      code: 1,
      stdout: '',
      stderr: "Domain 'dom0' cannot be removed.\n",
      requests: [],
    });
  });
});

describe('qvm check', () => {
  it('exits 0 when all exist, 3 when some do, 1 when none do', async () => {
    expect(await run(['check', 'work'])).toMatchObject({ code: 0, requests: [LIST] });
    expect(await run(['check', 'work', 'nosuch'])).toMatchObject({ code: 3 });
    expect(await run(['check', 'nosuch'])).toMatchObject({ code: 1 });
  });

  it('filters on the current power state', async () => {
    expect(await run(['check', '--running', 'work', 'newvm'])).toMatchObject({
      code: 3,
      requests: [LIST, 'admin.vm.CurrentState+ dom0 name work\0', 'admin.vm.CurrentState+ dom0 name newvm\0'],
    });
    expect(await run(['check', '--halted', 'newvm'])).toMatchObject({ code: 0 });
    expect(await run(['check', '--paused', 'sys-net'])).toMatchObject({ code: 1 });
  });
});

describe("upstream's qube selection: --all and --exclude", () => {
  it('acts on every qube but dom0, in name order, less the excluded ones', async () => {
    expect((await run(['pause', '--all'])).requests).toEqual([
      LIST,
      'admin.vm.Pause+ dom0 name debian-12\0',
      'admin.vm.Pause+ dom0 name newvm\0',
      'admin.vm.Pause+ dom0 name sys-net\0',
      'admin.vm.Pause+ dom0 name work\0',
    ]);
    expect((await run(['shutdown', '--all', '--exclude', 'sys-net', '--exclude', 'work'])).requests).toEqual([
      LIST,
      'admin.vm.Shutdown+ dom0 name debian-12\0',
      'admin.vm.Shutdown+ dom0 name newvm\0',
    ]);
  });

  it('refuses --exclude without --all, --all with names, and neither', async () => {
    for (const [args, message] of [
      [['kill', '--exclude', 'work', 'sys-net'], '--exclude can only be used with --all'],
      [['start', '--all', 'work'], '--all cannot be used with qube names'],
      [['unpause'], 'a qube name or --all is required'],
    ] as const) {
      expect(await run([...args])).toEqual({
        code: 2,
        stdout: '',
        stderr: `error: ${message}\n`,
        requests: [],
      });
    }
  });

  it("takes qvm-shutdown's deprecated --timeout as --wait", async () => {
    expect((await run(['shutdown', '--timeout', '60', 'sys-net'])).requests[1]).toBe(
      'admin.vm.Shutdown+wait dom0 name sys-net\0',
    );
  });
});
