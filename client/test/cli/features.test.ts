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

describe('qvm features', () => {
  it('lists features as a two-column table, one Get per feature', async () => {
    const { code, stdout, requests } = await run(['features', 'work']);
    expect(code).toBe(0);
    // `column -t` pads every cell but the last, so an empty value leaves the gap behind the name.
    expect(stdout).toBe('service.cups   1\nservice.crond  \ngui            1\nos             Linux\n');
    expect(requests).toEqual([
      LIST,
      'admin.vm.feature.List+ dom0 name work\0',
      'admin.vm.feature.Get+service.cups dom0 name work\0',
      'admin.vm.feature.Get+service.crond dom0 name work\0',
      'admin.vm.feature.Get+gui dom0 name work\0',
      'admin.vm.feature.Get+os dom0 name work\0',
    ]);
  });

  it('prints one feature, or exits 1 silently when it is not set', async () => {
    expect(await run(['features', 'work', 'os'])).toMatchObject({ code: 0, stdout: 'Linux\n', stderr: '' });
    expect(await run(['features', 'work', 'nope'])).toMatchObject({ code: 1, stdout: '', stderr: '' });
  });

  it('sets and unsets, ignoring an unset of a missing feature', async () => {
    expect((await run(['features', 'work', 'foo', 'bar'])).requests).toEqual([
      LIST,
      'admin.vm.feature.Set+foo dom0 name work\0bar',
    ]);
    expect(await run(['features', '--unset', 'work', 'foo'])).toMatchObject({
      code: 0,
      requests: [LIST, 'admin.vm.feature.Remove+foo dom0 name work\0'],
    });
    expect(await run(['features', '-D', 'work', 'nope'])).toMatchObject({ code: 0, stderr: '' });
  });

  it('reports protocol errors with the daemon message', async () => {
    expect(await run(['features', 'work', 'bad/name', 'x'])).toMatchObject({
      code: 1,
      stderr: 'feature name contains illegal characters\n',
    });
  });

  it('rejects --unset without a feature, and with a value', async () => {
    expect(await run(['features', '--unset', 'work'])).toMatchObject({ code: 2 });
    expect(await run(['features', '--unset', 'work', 'foo', 'bar'])).toMatchObject({
      code: 2,
      stderr: 'error: cannot both set and unset a value\n',
    });
  });

  it('--json prints the features as an object', async () => {
    expect(JSON.parse((await run(['--json', 'features', 'work'])).stdout)).toEqual({
      'service.cups': '1',
      'service.crond': '',
      gui: '1',
      os: 'Linux',
    });
  });
});

describe('qvm service', () => {
  it('lists service.* features as on/off, reading only those', async () => {
    expect(await run(['service', 'work'])).toMatchObject({
      code: 0,
      stdout: 'cups   on\ncrond  off\n',
      requests: [
        LIST,
        'admin.vm.feature.List+ dom0 name work\0',
        'admin.vm.feature.Get+service.cups dom0 name work\0',
        'admin.vm.feature.Get+service.crond dom0 name work\0',
      ],
    });
    expect(await run(['service', '--list', 'work'])).toMatchObject({ stdout: 'cups   on\ncrond  off\n' });
  });

  it('switches a service with "1" for on and "" for off', async () => {
    expect((await run(['service', 'work', 'cups', 'on'])).requests).toEqual([
      LIST,
      'admin.vm.feature.Set+service.cups dom0 name work\x001',
    ]);
    expect((await run(['service', 'work', 'cups', 'off'])).requests[1]).toBe(
      'admin.vm.feature.Set+service.cups dom0 name work\0',
    );
    expect((await run(['service', '--enable', 'work', 'cups'])).requests[1]).toBe(
      'admin.vm.feature.Set+service.cups dom0 name work\x001',
    );
  });

  it('shows one service, exit 1 when unset', async () => {
    expect(await run(['service', 'work', 'crond'])).toMatchObject({ code: 0, stdout: 'off\n' });
    expect(await run(['service', 'work', 'nope'])).toMatchObject({ code: 1, stdout: '' });
  });

  it('refuses a value that is not a boolean word', async () => {
    expect(await run(['service', 'work', 'cups', 'maybe'])).toMatchObject({
      code: 1,
      stderr: "Invalid literal for boolean value: 'maybe'\n",
    });
  });
});

describe('qvm tags', () => {
  it('lists tags one per line', async () => {
    expect(await run(['tags', 'newvm'])).toMatchObject({
      code: 0,
      stdout: 'audiovm-dom0\ncreated-by-dom0\nguivm-dom0\nmytag\n',
      requests: [LIST, 'admin.vm.tag.List+ dom0 name newvm\0'],
    });
  });

  it('queries one tag: printed with status 0, or status 1', async () => {
    expect(await run(['tags', 'newvm', 'list', 'mytag'])).toMatchObject({ code: 0, stdout: 'mytag\n' });
    expect(await run(['tags', 'newvm', 'ls', 'other'])).toMatchObject({ code: 1, stdout: '' });
  });

  it('adds several tags and removes them, a missing one being no error', async () => {
    expect((await run(['tags', 'newvm', 'add', 't1', 't2'])).requests).toEqual([
      LIST,
      'admin.vm.tag.Set+t1 dom0 name newvm\0',
      'admin.vm.tag.Set+t2 dom0 name newvm\0',
    ]);
    expect(await run(['tags', 'newvm', 'del', 'mytag', 'nosuchtag'])).toMatchObject({
      code: 0,
      requests: [
        LIST,
        'admin.vm.tag.Remove+mytag dom0 name newvm\0',
        'admin.vm.tag.Remove+nosuchtag dom0 name newvm\0',
      ],
    });
  });

  it('rejects an unknown action', async () => {
    expect(await run(['tags', 'newvm', 'frob'])).toMatchObject({
      code: 2,
      stderr: "error: invalid action: 'frob' (choose from list, add, del)\n",
    });
  });
});
