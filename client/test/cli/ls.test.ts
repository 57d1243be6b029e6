import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startTarget, type QubesdTarget } from '../helpers/fake-qubesd.js';
import { runQvmRecorded } from '../helpers/run-qvm.js';
import { SYSTEM } from '../fixtures/system.js';

let target: QubesdTarget;
beforeAll(async () => {
  target = await startTarget(SYSTEM);
});
afterAll(() => target.close());

const run = (args: string[]) => runQvmRecorded(target, args);

describe('qvm ls', () => {
  it('prints the qvm-ls default table from List + one GetAll per qube, in name order', async () => {
    const { code, stdout, stderr, requests } = await run(['ls']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toBe(
      'NAME       STATE    CLASS       LABEL  TEMPLATE   NETVM\n' +
        'debian-12  Halted   TemplateVM  black  -          -\n' +
        'dom0       Running  AdminVM     black  -          -\n' +
        'newvm      Halted   AppVM       green  debian-12  sys-net\n' +
        'sys-net    Running  AppVM       red    debian-12  -\n' +
        'work       Paused   AppVM       blue   debian-12  sys-net\n',
    );
    expect(requests).toEqual([
      'admin.vm.List+ dom0 name dom0\0',
      'admin.vm.property.GetAll+ dom0 name debian-12\0',
      'admin.vm.property.GetAll+ dom0 name dom0\0',
      'admin.vm.property.GetAll+ dom0 name newvm\0',
      // Empty GetAll reply: one Get per needed property instead.
      'admin.vm.property.GetAll+ dom0 name sys-net\0',
      'admin.vm.property.Get+label dom0 name sys-net\0',
      'admin.vm.property.Get+template dom0 name sys-net\0',
      'admin.vm.property.Get+netvm dom0 name sys-net\0',
      'admin.vm.property.GetAll+ dom0 name work\0',
    ]);
  });

  it('--raw-list prints names only, from admin.vm.List alone', async () => {
    const { code, stdout, requests } = await run(['ls', '--raw-list']);
    expect(code).toBe(0);
    expect(stdout).toBe('debian-12\ndom0\nnewvm\nsys-net\nwork\n');
    expect(requests).toEqual(['admin.vm.List+ dom0 name dom0\0']);
  });

  it('takes columns, qube names and state filters', async () => {
    const { stdout } = await run(['ls', '--fields', 'name,memory,class', 'work', 'debian-12']);
    expect(stdout).toBe(
      'NAME       MEMORY  CLASS\ndebian-12  400     TemplateVM\nwork       600     AppVM\n',
    );
    const raw = await run(['ls', '--raw-data', '-O', 'name,state', '--running']);
    expect(raw.stdout).toBe('dom0|Running\nsys-net|Running\n');
  });

  it('rejects an unknown qube as a usage error', async () => {
    const { code, stderr } = await run(['ls', 'nosuch']);
    expect(code).toBe(2);
    expect(stderr).toBe("error: no such domain: 'nosuch'\n");
  });

  it('--json gives typed values and null for what is absent', async () => {
    const { stdout } = await run(['--json', 'ls', 'work', 'dom0']);
    expect(JSON.parse(stdout)).toEqual([
      { name: 'dom0', state: 'Running', class: 'AdminVM', label: 'black', template: null, netvm: null },
      {
        name: 'work',
        state: 'Paused',
        class: 'AppVM',
        label: 'blue',
        template: 'debian-12',
        netvm: 'sys-net',
      },
    ]);
  });

  it("takes upstream's --class, --all/--exclude, --sort and --reverse", async () => {
    expect((await run(['ls', '--raw-list', '--class', 'AppVM', 'TemplateVM'])).stdout).toBe(
      'debian-12\nnewvm\nsys-net\nwork\n',
    );
    expect((await run(['ls', '--raw-list', '--all', '--exclude', 'work', '--exclude', 'dom0'])).stdout).toBe(
      'debian-12\nnewvm\nsys-net\n',
    );
    expect((await run(['ls', '-O', 'name,label', '--sort', 'label', '--reverse'])).stdout).toBe(
      'NAME       LABEL\n' +
        'sys-net    red\n' +
        'newvm      green\n' +
        'work       blue\n' +
        'debian-12  black\n' +
        'dom0       black\n',
    );
    expect(await run(['ls', '--exclude', 'work'])).toMatchObject({
      code: 2,
      stderr: 'error: --exclude can only be used with --all\n',
      requests: [],
    });
  });
});
