/**
 * dom0's QubesDB of a domain, read by the domain's own daemon over the socket
 * vchan transport: the entries upstream's create_qdb_entries writes, and the
 * live updates a property or feature change makes.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestQubesDb, QubesDbClient, LocalQubesDbServer } from '@odyssey/qubesdb';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QubesDbHost } from '../../src/daemon/qubesdb-host.js';
import { App } from '../../src/model/app.js';
import type { Vm } from '../../src/model/vm.js';
import { noPools } from '../support/pools.js';

let dir: string;
let app: App;
let work: Vm;
let host: QubesDbHost;
let guest: GuestQubesDb;
let local: LocalQubesDbServer;
let client: QubesDbClient;

function markRunning(vm: Vm, xid: number): void {
  vm.xid = xid;
  app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-qdb-host-'));
  app = new App(dir, { memoryMiB: 4096, cpus: 2 }, noPools);
  app.createAdminVm(app.labels.get('black'));
  const tpl = app.addVm('TemplateVM', { name: 'tpl', label: app.labels.get('black') });
  work = app.addVm('AppVM', { name: 'work', label: app.labels.get('red') });
  work.props.set('template', tpl);
  work.features.set('service.ntpd', '');
  host = new QubesDbHost({
    app,
    transport: new SocketVchanTransport({ localDomain: '0', dir: join(dir, 'vchan') }),
    socketDir: dir,
    timezone: 'Europe/Berlin',
    log: () => undefined,
  });
  markRunning(work, 7);
  guest = new GuestQubesDb({
    transport: new SocketVchanTransport({ localDomain: '7', dir: join(dir, 'vchan') }),
  });
  guest.start();
  await guest.ready;
  local = await LocalQubesDbServer.listen(join(dir, 'guest.sock'), guest.db);
  client = await QubesDbClient.connect(local.path);
});

afterEach(async () => {
  client.close();
  await local.close();
  await guest.stop();
  await host.close();
  await rm(dir, { recursive: true, force: true });
});

const text = async (key: string): Promise<string | undefined> => (await client.read(key))?.toString();

describe('QubesDbHost', () => {
  it("gives a started domain upstream's entries", async () => {
    const entries = Object.fromEntries(
      (await client.multiread('/')).map(([key, value]) => [key, value.toString()]),
    );
    const seed = entries['/qubes-random-seed'];
    expect(Buffer.from(seed ?? '', 'base64').length).toBe(64);
    delete entries['/qubes-random-seed'];
    expect(entries).toEqual({
      '/name': 'work',
      '/type': 'AppVM',
      '/default-user': 'user',
      '/qubes-vm-updateable': 'False',
      '/qubes-vm-persistence': 'rw-only',
      '/qubes-debug-mode': '0',
      '/qubes-base-template': 'tpl',
      '/qubes-timezone': 'Europe/Berlin',
      '/qubes-block-devices': '',
      '/qubes-usb-devices': '',
      '/qubes-service/ntpd': '0',
      '/qubes-service/meminfo-writer': '1',
      // Its guivm is dom0 (the default): the GUI is on, with the keyboard layout dom0 has.
      '/qubes-gui-enabled': 'True',
      '/keyboard-layout': 'us++',
      // dom0, its GUI and audio domain, always runs as domain 0.
      '/qubes-gui-domain-xid': '0',
      '/qubes-audio-domain-xid': '0',
      '/qubes-vm-type': 'AppVM',
      '/qubes-iptables-error': '',
    });
  });

  it('writes a service feature when it is set (every time) and removes it when it is deleted', async () => {
    await client.watch('/qubes-service/cups');
    work.features.set('service.cups', '1');
    expect(await client.watchEvent()).toBe('/qubes-service/cups');
    expect(await text('/qubes-service/cups')).toBe('1');
    work.features.set('service.cups', '1');
    expect(await client.watchEvent()).toBe('/qubes-service/cups');
    work.features.set('service.cups', '');
    expect(await client.watchEvent()).toBe('/qubes-service/cups');
    expect(await text('/qubes-service/cups')).toBe('0');
    work.features.remove('service.cups');
    expect(await client.watchEvent()).toBe('/qubes-service/cups');
    expect(await text('/qubes-service/cups')).toBeUndefined();
  });

  it("rewrites /keyboard-layout on every reset of keyboard_layout, an unchanged value too, as gui.py's handler", async () => {
    await client.watch('/keyboard-layout');
    await client.watch('/qubes-service/cups');
    work.props.reset('keyboard_layout');
    // The next change's watch event comes after the rewrite's: none is missing in between.
    work.features.set('service.cups', '1');
    expect(await client.watchEvent()).toBe('/keyboard-layout');
    expect(await client.watchEvent()).toBe('/qubes-service/cups');
    expect(await text('/keyboard-layout')).toBe('us++');
  });

  it('writes a custom-persist feature as /persist/<key> at once, and removes it when it is deleted', async () => {
    await client.watch('/persist/home');
    work.features.set('custom-persist.home', 'dir:user:user:0755:/home/user');
    expect(await client.watchEvent()).toBe('/persist/home');
    expect(await text('/persist/home')).toBe('dir:user:user:0755:/home/user');
    work.features.remove('custom-persist.home');
    expect(await client.watchEvent()).toBe('/persist/home');
    expect(await text('/persist/home')).toBeUndefined();
  });

  it('follows property changes, and features of the template', async () => {
    await client.watch('/qubes-debug-mode');
    work.props.set('debug', true);
    expect(await client.watchEvent()).toBe('/qubes-debug-mode');
    expect(await text('/qubes-debug-mode')).toBe('1');
    await client.watch('/qubes-timezone');
    work.template?.features.set('anon-timezone', '1');
    expect(await client.watchEvent()).toBe('/qubes-timezone');
    expect(await text('/qubes-timezone')).toBeUndefined();
  });

  it('writes the network keys only while the domain has a netvm', async () => {
    expect(await client.read('/qubes-ip')).toBeUndefined();
    const net = app.addVm('AppVM', { name: 'net', label: app.labels.get('red') });
    net.props.set('provides_network', true);
    await client.watch('/qubes-ip');
    work.props.set('netvm', net);
    expect(await client.watchEvent()).toBe('/qubes-ip');
    const ip = work.props.get('visible_ip') as string;
    expect(
      Object.fromEntries((await client.multiread('/qubes-')).map(([k, v]) => [k, v.toString()])),
    ).toMatchObject({
      '/qubes-ip': ip,
      '/qubes-netmask': '255.255.255.255',
      '/qubes-gateway': net.props.get('visible_ip'),
      '/qubes-primary-dns': '10.139.1.1',
      '/qubes-secondary-dns': '10.139.1.2',
      '/qubes-mac': work.props.get('mac'),
    });
    work.props.set('netvm', null);
    expect(await client.watchEvent()).toBe('/qubes-ip');
    expect(await client.read('/qubes-ip')).toBeUndefined();
    expect(await client.list('/qubes-gateway')).toEqual([]);
  });

  it("keeps the domain's own keys, and serves dom0's socket for the domain", async () => {
    await client.write('/qubes-iptables-error', 'from the guest');
    const dom0 = await QubesDbClient.connect(host.socketPath('work'));
    try {
      while ((await dom0.read('/qubes-iptables-error'))?.toString() !== 'from the guest') {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      work.features.set('service.cups', '1');
      expect((await dom0.read('/qubes-iptables-error'))?.toString()).toBe('from the guest');
      expect((await dom0.read('/name'))?.toString()).toBe('work');
    } finally {
      dom0.close();
    }
    expect((await stat(host.socketPath('work') ?? '')).mode & 0o777).toBe(0o600);
    const ro = await QubesDbClient.connect(join(dir, 'qubesdb.work.ro.sock'));
    try {
      expect((await ro.read('/name'))?.toString()).toBe('work');
      await expect(ro.write('/name', 'x')).rejects.toThrow(/cannot write/);
    } finally {
      ro.close();
    }
  });

  it('lets go of a domain that stopped', async () => {
    markRunning(work, -1);
    expect(host.database('work')).toBeUndefined();
    const gone = await QubesDbClient.connect(join(dir, 'qubesdb.work.sock')).then(
      (c) => (c.close(), 'connected'),
      () => 'refused',
    );
    expect(gone).toBe('refused');
  });
});
