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

describe('qvm create', () => {
  it('sends admin.label.List, then admin.vm.Create.<class>+<template> (captured qvm-create bytes)', async () => {
    const { code, stdout, stderr, requests } = await run([
      'create',
      '--label',
      'red',
      '-t',
      'debian-12',
      'newvm',
    ]);
    expect({ code, stdout, stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(requests).toEqual([
      'admin.label.List+ dom0 name dom0\0',
      'admin.vm.Create.AppVM+debian-12 dom0 name dom0\0name=newvm label=red',
    ]);
  });

  it('uses CreateInPool with -P, and an empty argument without a template', async () => {
    const { code, requests } = await run(['create', '-C', 'StandaloneVM', '-l', 'blue', '-P', 'lvm', 'x']);
    expect(code).toBe(0);
    expect(requests[1]).toBe(
      'admin.vm.CreateInPool.StandaloneVM+ dom0 name dom0\0name=x label=blue pool=lvm',
    );
  });

  it('sets --prop values after creating, exit status 2 when one fails', async () => {
    const { code, stderr, requests } = await run([
      'create',
      '-l',
      'red',
      '-t',
      'debian-12',
      '--pool',
      'private=varlibqubes',
      '--prop',
      'memory=1000',
      '--property',
      'vcpus=many',
      'x5',
    ]);
    expect(requests).toEqual([
      'admin.label.List+ dom0 name dom0\0',
      'admin.vm.CreateInPool.AppVM+debian-12 dom0 name dom0\0name=x5 label=red pool:private=varlibqubes',
      'admin.vm.property.Set+memory dom0 name x5\x001000',
      'admin.vm.property.Set+vcpus dom0 name x5\0many',
    ]);
    expect(stderr).toBe(
      'Error setting property vcpus (but VM created): Failed to parse property value as int\n',
    );
    expect(code).toBe(2);
  });

  it('reports a daemon refusal with exit status 1', async () => {
    const { code, stderr } = await run(['create', '-l', 'red', '-t', 'debian-12', 'work']);
    expect(code).toBe(1);
    expect(stderr).toBe('Error creating VM: Qube already exists: work\n');
  });

  it('checks the label before creating anything', async () => {
    const { code, stderr, requests } = await run(['create', '-l', 'pink', 'x']);
    expect(code).toBe(2);
    expect(stderr).toBe(
      "error: no such label: 'pink'; available: red, orange, yellow, green, gray, blue, purple, black\n",
    );
    expect(requests).toEqual(['admin.label.List+ dom0 name dom0\0']);
  });

  it('requires a label and a name without calling qubesd', async () => {
    expect(await run(['create', 'x'])).toMatchObject({
      code: 2,
      stderr: 'error: --label option is mandatory\n',
      requests: [],
    });
    expect(await run(['create', '-l', 'red'])).toMatchObject({
      code: 2,
      stderr: 'error: VMNAME is mandatory\n',
    });
  });
});
