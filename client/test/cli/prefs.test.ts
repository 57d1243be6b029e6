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

const LIST = 'admin.vm.List+ dom0 name dom0\0';

describe('qvm prefs', () => {
  it('lists properties sorted, marking defaults D, set values -, valueless U', async () => {
    const { code, stdout, requests } = await run(['prefs', 'work']);
    expect(code).toBe(0);
    expect(stdout).toBe(
      'autostart    D  False\n' +
        'kernelopts   -  opt1\nopt2\\x\n' +
        'klass        D  AppVM\n' +
        'label        -  blue\n' +
        'memory       -  600\n' +
        'name         -  work\n' +
        'netvm        D  sys-net\n' +
        'stubdom_mem  U\n' +
        'template     -  debian-12\n',
    );
    expect(requests).toEqual([
      LIST,
      'admin.vm.property.List+ dom0 name work\0',
      'admin.vm.property.GetAll+ dom0 name work\0',
    ]);
  });

  it('--hide-default leaves out defaults', async () => {
    const { stdout } = await run(['prefs', '--hide-default', 'dom0']);
    expect(stdout).toBe('label               -  black\n');
  });

  it('prints one value; None prints nothing', async () => {
    expect(await run(['prefs', 'work', 'memory'])).toMatchObject({
      code: 0,
      stdout: '600\n',
      requests: [LIST, 'admin.vm.property.Get+memory dom0 name work\0'],
    });
    expect(await run(['prefs', 'work', 'netvm'])).toMatchObject({ code: 0, stdout: '' });
  });

  it("ignores upstream's --get/-g and --set/-s, as qvm-prefs does", async () => {
    const plain = await run(['prefs', 'work', 'memory']);
    expect(await run(['prefs', '--get', 'work', 'memory'])).toEqual(plain);
    expect(await run(['prefs', '-g', 'work', 'memory'])).toEqual(plain);
    const set = await run(['prefs', 'work', 'memory', '800']);
    expect(await run(['prefs', '-s', 'work', 'memory', '800'])).toEqual(set);
  });

  it('sets, resets, and maps "none" to an empty VM value', async () => {
    expect((await run(['prefs', 'work', 'memory', '800'])).requests).toEqual([
      LIST,
      'admin.vm.property.Set+memory dom0 name work\x00800',
    ]);
    expect((await run(['prefs', '--default', 'work', 'memory'])).requests).toEqual([
      LIST,
      'admin.vm.property.Reset+memory dom0 name work\0',
    ]);
    expect((await run(['prefs', 'work', 'netvm', 'None'])).requests).toEqual([
      LIST,
      'admin.vm.property.Set+netvm dom0 name work\0',
    ]);
  });

  it('prints the default with --get-default, nothing when there is none', async () => {
    expect(await run(['prefs', '--get-default', 'work', 'memory'])).toMatchObject({
      code: 0,
      stdout: '400\n',
    });
    expect(await run(['prefs', '--get-default', 'work', 'template'])).toMatchObject({ code: 0, stdout: '' });
  });

  it('prints the daemon message and exits 1 on a refused value', async () => {
    // A value starting with '-' needs '--' before it, as with qvm-prefs.
    expect(await run(['prefs', 'work', 'memory', '--', '-1'])).toMatchObject({
      code: 1,
      stdout: '',
      stderr: 'memory must be positive\n',
    });
  });

  it('treats an unknown property or qube as a usage error', async () => {
    expect(await run(['prefs', 'work', 'nosuchprop'])).toMatchObject({
      code: 2,
      stderr: "error: no such property: 'nosuchprop'\n",
    });
    expect(await run(['prefs', 'nosuch'])).toMatchObject({
      code: 2,
      stderr: "error: no such domain: 'nosuch'\n",
      requests: [LIST],
    });
  });

  it('--json gives values typed, with their default flag', async () => {
    const { stdout } = await run(['--json', 'prefs', 'work']);
    expect(JSON.parse(stdout)).toMatchObject({
      memory: { value: 600, default: false, type: 'int' },
      autostart: { value: false, default: true, type: 'bool' },
      stubdom_mem: { value: null, default: true, type: 'int' },
      kernelopts: { value: 'opt1\nopt2\\x', default: false, type: 'str' },
    });
    expect(JSON.parse((await run(['--json', 'prefs', 'work', 'memory'])).stdout)).toEqual({
      name: 'memory',
      value: 600,
      default: false,
      type: 'int',
    });
  });
});

describe('qvm global-prefs', () => {
  it('lists global properties from admin.property.List + GetAll, without admin.vm.List', async () => {
    const { code, stdout, requests } = await run(['global-prefs']);
    expect(code).toBe(0);
    expect(stdout).toBe(
      'clockvm         D  None\n' +
        'default_kernel  -  6.6.1\n' +
        'default_netvm   -  sys-net\n' +
        'stats_interval  D  3\n',
    );
    expect(requests).toEqual([
      'admin.property.List+ dom0 name dom0\0',
      'admin.property.GetAll+ dom0 name dom0\0',
    ]);
  });

  it('sets a global property and reports refusals', async () => {
    const { code, stderr, requests } = await run(['global-prefs', 'default_netvm', 'sys-net']);
    expect(requests).toEqual(['admin.property.Set+default_netvm dom0 name dom0\0sys-net']);
    expect({ code, stderr }).toEqual({ code: 1, stderr: "Network loop on 'sys-net'\n" });
  });
});
