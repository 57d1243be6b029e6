import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  AdminClient,
  QubesDaemonAccessError,
  QubesFeatureNotFoundError,
  QubesNoSuchPropertyError,
  QubesVMAlreadyExistsError,
  SocketTransport,
} from '../src/index.js';
import { FakeQubesd, cannedResponder, type QubesdTarget } from './helpers/fake-qubesd.js';
import { SYSTEM, UUID } from './fixtures/system.js';
import { event, exc, ok, req } from './fixtures/wire.js';

let target: QubesdTarget;
let client: AdminClient;

beforeAll(async () => {
  target = await FakeQubesd.start(
    cannedResponder({
      ...SYSTEM,
      [req('admin.Events', '', 'dom0')]: {
        chunks: [
          '1\0\0connection-',
          'established\0\0' + event('work', 'domain-paused').slice(0, 7),
          event('work', 'domain-paused').slice(7),
        ],
        repeat: event('work', 'domain-qdb-change:/x', { path: '/x' }),
      },
      [req('admin.Events', '', 'work')]: exc('PermissionDenied', 'Argument not in allowed set'),
      [req('admin.vm.Stats', '', 'dom0')]: {
        chunks: [
          event('', 'connection-established'),
          event('sys-net', 'vm-stats', { memory_kb: '409600', cpu_usage: '3' }),
        ],
      },
    }),
  );
  client = new AdminClient(new SocketTransport(target.socketPath));
});

afterAll(() => target.close());

/** Runs `fn` and returns exactly the requests it made. */
async function requestsOf(fn: () => Promise<unknown>): Promise<string[]> {
  const before = target.requests.length;
  await fn();
  return target.requestStrings().slice(before);
}

describe('AdminClient over the socket transport', () => {
  it('lists qubes, parsing class, state and uuid', async () => {
    const vms = await client.vms.list();
    expect(vms.map((vm) => vm.name)).toEqual(['dom0', 'debian-12', 'newvm', 'sys-net', 'work']);
    expect(vms[0]).toEqual({ name: 'dom0', klass: 'AdminVM', state: 'Running', uuid: UUID.dom0 });
    expect(target.requestStrings().at(-1)).toBe('admin.vm.List+ dom0 name dom0\0');
  });

  it('reads properties one at a time and all at once', async () => {
    expect(await client.vmProperties('work').get('memory')).toEqual({
      isDefault: false,
      type: 'int',
      value: '600',
    });
    const all = await client.vmProperties('work').getAll();
    expect(all.get('kernelopts')?.value).toBe('opt1\nopt2\\x');
    expect(await client.vmProperties('work').getDefault('memory')).toEqual({ type: 'int', value: '400' });
    expect(await client.vmProperties('work').getDefault('template')).toBeUndefined();
    expect(await client.vmProperties('work').help('netvm')).toMatch(/^VM that provides network/);
    await expect(client.vmProperties('work').get('nosuchprop')).rejects.toThrow(QubesNoSuchPropertyError);
  });

  it('falls back to one Get per property on an empty GetAll reply', async () => {
    const requests = await requestsOf(async () => {
      const props = await client
        .vmProperties('sys-net')
        .getAllOrEach(async () => ['label', 'template', 'netvm']);
      expect(props.get('label')?.value).toBe('red');
    });
    expect(requests).toEqual([
      'admin.vm.property.GetAll+ dom0 name sys-net\0',
      'admin.vm.property.Get+label dom0 name sys-net\0',
      'admin.vm.property.Get+template dom0 name sys-net\0',
      'admin.vm.property.Get+netvm dom0 name sys-net\0',
    ]);
    await expect(client.vmProperties('sys-net').getAll()).rejects.toThrow(QubesDaemonAccessError);
  });

  it('sends writes with their payloads', async () => {
    const requests = await requestsOf(async () => {
      await client.vmProperties('work').set('memory', '800');
      await client.vmProperties('work').reset('memory');
      await client.features.set('work', 'service.cups', true);
      await client.features.set('work', 'service.cups', false);
      await client.tags.add('newvm', 't1');
      await client.labels.create('mylabel', '0x123456');
      await client.vms.shutdown('sys-net', { force: true, wait: true });
      await client.volumes.resize('newvm', 'private', 3221225472n);
    });
    expect(requests).toEqual([
      'admin.vm.property.Set+memory dom0 name work\x00800',
      'admin.vm.property.Reset+memory dom0 name work\0',
      'admin.vm.feature.Set+service.cups dom0 name work\x001',
      'admin.vm.feature.Set+service.cups dom0 name work\0',
      'admin.vm.tag.Set+t1 dom0 name newvm\0',
      'admin.label.Create+mylabel dom0 name dom0\x000x123456',
      'admin.vm.Shutdown+force+wait dom0 name sys-net\0',
      'admin.vm.volume.Resize+private dom0 name newvm\x003221225472',
    ]);
  });

  it('creates qubes with Create or CreateInPool as the options require', async () => {
    const requests = await requestsOf(async () => {
      await client.vms.create({ klass: 'AppVM', name: 'newvm', label: 'red', template: 'debian-12' });
      await client.vms.create({ klass: 'StandaloneVM', name: 'x', label: 'blue', pool: 'lvm' });
      await client.vms.create({
        klass: 'AppVM',
        name: 'x5',
        label: 'red',
        template: 'debian-12',
        pools: { private: 'varlibqubes' },
      });
    });
    expect(requests).toEqual([
      'admin.vm.Create.AppVM+debian-12 dom0 name dom0\0name=newvm label=red',
      'admin.vm.CreateInPool.StandaloneVM+ dom0 name dom0\0name=x label=blue pool=lvm',
      'admin.vm.CreateInPool.AppVM+debian-12 dom0 name dom0\0name=x5 label=red pool:private=varlibqubes',
    ]);
    await expect(
      client.vms.create({ klass: 'AppVM', name: 'work', label: 'red', template: 'debian-12' }),
    ).rejects.toMatchObject({ type: 'QubesVMAlreadyExistsError', message: 'Qube already exists: work' });
    await expect(
      client.vms.create({ klass: 'AppVM', name: 'work', label: 'red', template: 'debian-12' }),
    ).rejects.toBeInstanceOf(QubesVMAlreadyExistsError);
  });

  it('reads features, tags, labels, firewall, state, notes and storage', async () => {
    expect(await client.features.getAll('work')).toEqual([
      ['service.cups', '1'],
      ['service.crond', ''],
      ['gui', '1'],
      ['os', 'Linux'],
    ]);
    expect(await client.features.find('work', 'nope')).toBeUndefined();
    await expect(client.features.get('work', 'nope')).rejects.toThrow(QubesFeatureNotFoundError);
    expect(await client.features.checkWithTemplate('work', 'os')).toBe('Linux');
    expect(await client.tags.list('newvm')).toEqual([
      'audiovm-dom0',
      'created-by-dom0',
      'guivm-dom0',
      'mytag',
    ]);
    expect(await client.tags.has('newvm', 'mytag')).toBe(true);
    expect(await client.tags.has('newvm', 'other')).toBe(false);
    expect(await client.labels.getColor('red')).toBe('0xcc0000');
    expect(await client.labels.getIndex('mylabel')).toBe(9);
    expect(await client.firewall.get('newvm')).toHaveLength(5);
    expect(await client.vms.currentState('work')).toEqual({
      mem: 409600,
      memStaticMax: 4096000,
      cputime: 1234,
      powerState: 'Paused',
    });
    expect(await client.vms.getNotes('work')).toBe('first line\nsecond line');
    expect(await client.pools.list()).toEqual(['varlibqubes', 'linux-kernel']);
    expect((await client.pools.info('linux-kernel')).included_in).toBe('varlibqubes');
    expect((await client.volumes.info('newvm', 'private')).size).toBe('2147483648');
  });

  it('streams events split across chunks and hangs up when the caller stops', async () => {
    const first = target.requests.length;
    const received = [];
    for await (const e of client.events()) {
      received.push(e);
      if (received.length === 2) break;
    }
    expect(received).toEqual([
      { subject: '', event: 'connection-established', kwargs: {} },
      { subject: 'work', event: 'domain-paused', kwargs: {} },
    ]);
    expect(target.requestStrings()[first]).toBe('admin.Events+ dom0 name dom0\0');
    await target.closed(first);
  });

  it('ends a stats stream when the server closes it', async () => {
    const received = [];
    for await (const e of client.stats()) received.push(e);
    expect(received[1]).toEqual({
      subject: 'sys-net',
      event: 'vm-stats',
      kwargs: { memory_kb: '409600', cpu_usage: '3' },
    });
  });

  it('throws an exception reply that replaces the event stream', async () => {
    const stream = client.events('work');
    await expect(stream.next()).rejects.toMatchObject({ type: 'PermissionDenied' });
  });

  it('stops streaming when the abort signal fires', async () => {
    const controller = new AbortController();
    const received = [];
    for await (const e of client.events('dom0', controller.signal)) {
      received.push(e);
      controller.abort();
    }
    expect(received).toHaveLength(1);
  });

  it('reports a socket nobody listens on', async () => {
    const lost = new AdminClient(new SocketTransport(`${target.socketPath}.missing`));
    await expect(lost.vms.list()).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('AdminClient with a raw call', () => {
  it('exposes any method', async () => {
    const body = await client.call('admin.vm.property.Get', 'work', 'name');
    expect(body.toString()).toBe('default=False type=str work');
    expect(ok('x')).toBe('0\0x');
  });
});
