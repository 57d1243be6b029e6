/**
 * qubes.FeaturesRequest on a real daemon: a domain's agent writes
 * /features-request/* into its QubesDB (the guest daemon forwards them to
 * dom0's copy over the socket vchan transport), then calls the service, whose
 * qrexec link reaches the daemon's misc socket with qrexec's header.
 */
import 'reflect-metadata';

import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestQubesDb } from '@odyssey/qubesdb';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Vm } from '../../src/model/vm.js';
import type { QubesEvent } from '../../src/model/events.js';
import { HOST_TOKENS } from '../../src/daemon/after-start.js';
import { MAX_REQUESTED_FEATURES, MAX_REQUESTED_VALUE } from '../../src/api/methods/features-request.js';
import { exc, rawCall, startDaemon, type TestDaemon } from '../support/harness.js';

let vchanDir: string;
let d: TestDaemon;
let guests: GuestQubesDb[];
let events: QubesEvent[];

beforeEach(async () => {
  vchanDir = await mkdtemp(join(tmpdir(), 'odyssey-featreq-'));
  d = await startDaemon({ vchan: new SocketVchanTransport({ localDomain: '0', dir: vchanDir }) });
  guests = [];
  await d.ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await d.ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
  // No qrexec agent answers in these domains: dom0's qrexec gives up on them at once.
  for (const vm of ['tpl', 'work']) await d.ok('admin.vm.property.Set', vm, 'qrexec_timeout', '1');
  events = [];
  d.daemon.app.events.subscribe((event) => events.push(event));
});

afterEach(async () => {
  await Promise.all(guests.map((g) => g.stop()));
  await d.stop();
  await rm(vchanDir, { recursive: true, force: true });
});

const misc = (): string => join(d.stateDir, 'run', 'qubesd.misc.sock');

/** What qrexec writes to a socket service for a call from `src` to dom0. */
const call = (src: string, arg = '', payload = ''): Promise<Buffer> =>
  rawCall(misc(), `qubes.FeaturesRequest+${arg} ${src} keyword adminvm\0${payload}`);

/** Marks `name` running as `xid` (dom0 serves its QubesDB) and connects its guest daemon. */
async function running(name: string, xid: number): Promise<GuestQubesDb> {
  const vm = d.daemon.app.domains.get(name);
  vm.xid = xid;
  d.daemon.app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
  const guest = new GuestQubesDb({
    transport: new SocketVchanTransport({ localDomain: String(xid), dir: vchanDir }),
  });
  guests.push(guest);
  guest.start();
  await guest.ready;
  return guest;
}

/** Writes the requests in the guest and waits until dom0's copy of its database has them all. */
async function request(guest: GuestQubesDb, name: string, features: Record<string, string>): Promise<void> {
  for (const [key, value] of Object.entries(features)) guest.db.write(`/features-request/${key}`, value);
  await arrived(name, Object.keys(features));
}

async function arrived(name: string, keys: readonly string[]): Promise<void> {
  const dom0 = d.daemon.container.resolve(HOST_TOKENS.QubesDb).database(name);
  if (!dom0) throw new Error(`${name} has no QubesDB`);
  while (!keys.every((key) => dom0.has(`/features-request/${key}`)))
    await new Promise((r) => setTimeout(r, 5));
}

/** Python's string.ascii_letters + string.digits, which upstream's refusals quote. */
const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

const features = (vm: Vm): Record<string, string> => Object.fromEntries(vm.features.entries());

describe('qubes.FeaturesRequest', () => {
  it('links the qrexec service to the misc socket', async () => {
    expect(await readlink(join(d.stateDir, 'qrexec-services', 'qubes.FeaturesRequest'))).toBe(misc());
  });

  it("applies a template's announcement as upstream's extensions and fires features-request", async () => {
    const tpl = d.daemon.app.domains.get('tpl');
    tpl.features.set('gui', '');
    tpl.features.set('supported-rpc.qubes.Old', '1');
    const guest = await running('tpl', 5);
    await request(guest, 'tpl', {
      qrexec: '1',
      gui: '1',
      vmexec: '1',
      os: 'Linux',
      'os-distribution': 'debian',
      'os-version': '12',
      'supported-rpc.qubes.VMShell': '1',
      'supported-rpc.qubes.Filecopy': '1',
      'supported-rpc.qubes.Nope': '0',
      'supported-service.cups': '1',
      'ignored-by-all': '1',
    });
    events.length = 0;
    expect((await call('tpl')).toString('latin1')).toBe('0\0');
    expect(features(tpl)).toEqual({
      gui: '',
      qrexec: '1',
      vmexec: '1',
      os: 'Linux',
      'os-distribution': 'debian',
      'os-version': '12',
      'supported-rpc.qubes.VMShell': '1',
      'supported-rpc.qubes.Filecopy': '1',
      'supported-service.cups': '1',
    });
    // Upstream's synchronous handlers (os, supported-*) act as the event fires, before
    // admin.Events sees it; CoreFeatures, a coroutine, acts after.
    const names = events.filter((e) => e.subject === tpl && !e.name.includes('-pre-')).map((e) => e.name);
    expect(names).toEqual([
      'domain-feature-set:os',
      'domain-feature-set:supported-service.cups',
      'domain-feature-set:supported-rpc.qubes.Filecopy',
      'domain-feature-set:supported-rpc.qubes.VMShell',
      'domain-feature-delete:supported-rpc.qubes.Old',
      'features-request',
      'domain-feature-set:os-distribution',
      'domain-feature-set:os-version',
      'domain-feature-set:qrexec',
      'domain-feature-set:vmexec',
      'template-postinstall',
    ]);
    const fired = events.find((e) => e.name === 'features-request');
    expect(fired?.args).toEqual({
      untrusted_features:
        "{'gui': '1', 'ignored-by-all': '1', 'os': 'Linux', 'os-distribution': 'debian', 'os-version': '12', " +
        "'qrexec': '1', 'supported-rpc.qubes.Filecopy': '1', 'supported-rpc.qubes.Nope': '0', " +
        "'supported-rpc.qubes.VMShell': '1', 'supported-service.cups': '1', 'vmexec': '1'}",
    });
    // Saved as upstream's app.save(): the features are in qubes.xml.
    await d.daemon.store.flush();
    const xml = await readFile(join(d.stateDir, 'qubes.xml'), 'utf8');
    expect(xml).toContain('<feature name="supported-rpc.qubes.VMShell">1</feature>');
  });

  it('takes only supported-rpc from a template-based caller', async () => {
    const work = d.daemon.app.domains.get('work');
    const guest = await running('work', 6);
    await request(guest, 'work', {
      qrexec: '1',
      vmexec: '1',
      'supported-service.x': '1',
      'supported-rpc.a': '1',
    });
    expect((await call('work')).toString('latin1')).toBe('0\0');
    expect(features(work)).toEqual({ 'supported-rpc.a': '1' });
  });

  it('refuses hostile values and names before changing anything', async () => {
    const tpl = d.daemon.app.domains.get('tpl');
    const guest = await running('tpl', 5);
    await request(guest, 'tpl', { qrexec: '1', os: 'a$b' });
    expect((await call('tpl')).toString('latin1')).toBe(
      exc('ProtocolError', `Value outside safe set: ${ALNUM}-.,_= `),
    );
    guest.db.rm('/features-request/os');
    await request(guest, 'tpl', { 'x:y': '1' });
    expect((await call('tpl')).toString('latin1')).toBe(exc('PermissionDenied', ''));
    guest.db.rm('/features-request/x:y');
    await request(guest, 'tpl', { os: 'x'.repeat(MAX_REQUESTED_VALUE + 1) });
    expect((await call('tpl')).toString('latin1')).toBe(exc('PermissionDenied', ''));
    guest.db.rm('/features-request/os');
    const many = Object.fromEntries(
      Array.from({ length: MAX_REQUESTED_FEATURES + 1 }, (_, i) => [`supported-rpc.s${i}`, '1']),
    );
    await request(guest, 'tpl', many);
    expect((await call('tpl')).toString('latin1')).toBe(exc('PermissionDenied', ''));
    expect(features(tpl)).toEqual({});
    expect(events.some((e) => e.name === 'features-request')).toBe(false);
  });

  it("takes upstream 4.4's safe set, and only well-formed os-release strings", async () => {
    const tpl = d.daemon.app.domains.get('tpl');
    const guest = await running('tpl', 5);
    await request(guest, 'tpl', {
      os: 'Plan9',
      'os-distribution': 'linuxmint',
      'os-distribution-like': 'ubuntu debian',
      'os-version': '21.3 virginia',
      'os-eol': '2027-02-29',
      'qubes-agent-version': '4.3',
      'anon-timezone': '1',
      'x-human-name': 'a=b, c',
    });
    expect((await call('tpl')).toString('latin1')).toBe('0\0');
    expect(features(tpl)).toEqual({
      'os-distribution': 'linuxmint',
      'os-distribution-like': 'ubuntu debian',
      'qubes-agent-version': '4.3',
      'anon-timezone': '1',
    });
    guest.db.write('/features-request/os', 'Linux');
    guest.db.write('/features-request/os-version', '21.3');
    guest.db.write('/features-request/os-eol', '2028-02-29');
    guest.db.write('/features-request/anon-timezone', '0');
    const dom0 = d.daemon.container.resolve(HOST_TOKENS.QubesDb).database('tpl');
    while (dom0?.read('/features-request/anon-timezone')?.toString() !== '0')
      await new Promise((r) => setTimeout(r, 5));
    expect((await call('tpl')).toString('latin1')).toBe('0\0');
    expect(features(tpl)).toMatchObject({ os: 'Linux', 'os-version': '21.3', 'os-eol': '2028-02-29' });
    // anon-timezone cannot be switched off by the qube.
    expect(features(tpl)['anon-timezone']).toBe('1');
  });

  it('closes without an answer on a non-ASCII value before any other check, as upstream', async () => {
    const guest = await running('tpl', 5);
    guest.db.write('/features-request/a', 'a$b');
    guest.db.write('/features-request/b', Buffer.from([0xc3, 0xa9]));
    await arrived('tpl', ['a', 'b']);
    expect((await call('tpl')).length).toBe(0);
  });

  it('closes without an answer on a non-ASCII value, as upstream', async () => {
    const guest = await running('tpl', 5);
    guest.db.write('/features-request/os', Buffer.from([0xc3, 0xa9]));
    await arrived('tpl', ['os']);
    expect((await call('tpl')).length).toBe(0);
    expect(features(d.daemon.app.domains.get('tpl'))).toEqual({});
  });

  describe("Qubes Windows Tools' defaults (upstream's WindowsFeatures)", () => {
    /** The caller's events as admin.Events shows them, without the pre-events. */
    const fired = (vm: Vm): string[] =>
      events.filter((e) => e.subject === vm && !e.name.includes('-pre-')).map((e) => e.name);

    it('gives a Windows qube announcing qrexec its defaults, before the event and CoreFeatures', async () => {
      const tpl = d.daemon.app.domains.get('tpl');
      await d.ok('admin.vm.property.Set', 'tpl', 'virt_mode', 'hvm');
      tpl.features.set('audio-model', 'ich9');
      tpl.features.set('no-monitor-layout', '');
      tpl.features.set('rpc-clipboard', '');
      const guest = await running('tpl', 5);
      tpl.powerState = 'Running';
      await request(guest, 'tpl', { os: 'Windows', qrexec: '1', gui: '1', 'supported-rpc.qubes.X': '1' });
      events.length = 0;
      expect((await call('tpl')).toString('latin1')).toBe('0\0');
      tpl.powerState = 'Halted';
      expect(features(tpl)).toEqual({
        os: 'Windows',
        // Always set; the others only while unset, an explicit false included.
        'rpc-clipboard': '1',
        'audio-model': 'ich9',
        'no-monitor-layout': '',
        'stubdom-qrexec': '1',
        timezone: 'localtime',
        'supported-rpc.qubes.X': '1',
        qrexec: '1',
        gui: '1',
      });
      expect([tpl.props.isDefault('maxmem'), tpl.props.get('maxmem')]).toEqual([false, 0]);
      expect(tpl.props.get('qrexec_timeout')).toBe(6000);
      // Upstream's synchronous handlers run as the event fires, before admin.Events sees it;
      // CoreFeatures, a coroutine, after. So maxmem was still 0 by default here: an HVM
      // qube balances memory only once it has qrexec, which CoreFeatures sets.
      expect(fired(tpl)).toEqual([
        'domain-feature-set:os',
        'domain-feature-set:rpc-clipboard',
        'property-set:maxmem',
        'property-set:qrexec_timeout',
        'domain-feature-set:stubdom-qrexec',
        'domain-feature-set:timezone',
        'domain-feature-set:supported-rpc.qubes.X',
        'features-request',
        'domain-feature-set:qrexec',
        'domain-feature-set:gui',
        'template-postinstall',
      ]);
    });

    it('fails as upstream when it would change the maxmem of the running qube', async () => {
      const tpl = d.daemon.app.domains.get('tpl');
      await d.ok('admin.vm.property.Set', 'tpl', 'maxmem', '4000');
      const guest = await running('tpl', 5);
      tpl.powerState = 'Running';
      await request(guest, 'tpl', { os: 'Windows', qrexec: '1', 'supported-rpc.qubes.X': '1' });
      events.length = 0;
      expect((await call('tpl')).toString('latin1')).toBe(
        exc(
          'QubesVMNotHaltedError',
          "Can't change maxmem of VM tpl, because it isn't Halted and memory hotplug is forbidden",
        ),
      );
      tpl.powerState = 'Halted';
      // What WindowsFeatures did before maxmem stays; the rest of the request is not applied.
      expect(features(tpl)).toEqual({ os: 'Windows', 'rpc-clipboard': '1' });
      expect([tpl.props.get('maxmem'), tpl.props.get('qrexec_timeout')]).toEqual([4000, 1]);
      expect(fired(tpl)).toEqual(['domain-feature-set:os', 'domain-feature-set:rpc-clipboard']);
    });

    it("needs qrexec '1' in the request itself, and a caller without a template", async () => {
      const tpl = d.daemon.app.domains.get('tpl');
      const work = d.daemon.app.domains.get('work');
      tpl.features.set('qrexec', '1');
      const guest = await running('tpl', 5);
      await request(guest, 'tpl', { os: 'Windows', gui: '0' });
      expect((await call('tpl')).toString('latin1')).toBe('0\0');
      guest.db.write('/features-request/qrexec', '0');
      await arrived('tpl', ['qrexec']);
      expect((await call('tpl')).toString('latin1')).toBe('0\0');
      expect(features(tpl)).toEqual({ qrexec: '1', os: 'Windows', gui: '' });
      expect([tpl.props.isDefault('maxmem'), tpl.props.get('qrexec_timeout')]).toEqual([true, 1]);
      const workGuest = await running('work', 6);
      await request(workGuest, 'work', { os: 'Windows', qrexec: '1' });
      expect((await call('work')).toString('latin1')).toBe('0\0');
      expect(features(work)).toEqual({});
      expect([work.props.isDefault('maxmem'), work.props.get('qrexec_timeout')]).toEqual([true, 1]);
    });
  });

  it('refuses an argument, a payload, a target other than dom0 and a halted caller', async () => {
    expect((await call('tpl', 'x')).toString('latin1')).toMatch(/^2\0ProtocolError\0/);
    expect((await call('tpl', '', 'data')).toString('latin1')).toMatch(/^2\0ProtocolError\0/);
    const other = await rawCall(misc(), 'qubes.FeaturesRequest+ tpl name work\0');
    expect(other.toString('latin1')).toMatch(/^2\0ProtocolError\0/);
    const notRunning = exc(
      'QubesVMNotRunningError',
      "Domain not running (either powered off or paused): 'tpl'",
    );
    expect((await call('tpl')).toString('latin1')).toBe(notRunning);
    expect((await notifyTools('tpl')).toString('latin1')).toBe(notRunning);
    expect((await call('nosuch')).toString('latin1')).toMatch(/^2\0QubesVMNotFoundError\0/);
  });
});

/** What qrexec writes for a qubes.NotifyTools call (upstream's legacy service of Qubes Windows Tools). */
const notifyTools = (src: string, arg = '', payload = ''): Promise<Buffer> =>
  rawCall(misc(), `qubes.NotifyTools+${arg} ${src} keyword adminvm\0${payload}`);

/** Writes `/qubes-tools/*` in the guest and waits until dom0's copy holds these values. */
async function tools(
  guest: GuestQubesDb,
  name: string,
  values: Record<string, string | Buffer>,
): Promise<void> {
  const dom0 = d.daemon.container.resolve(HOST_TOKENS.QubesDb).database(name);
  if (!dom0) throw new Error(`${name} has no QubesDB`);
  const wanted = Object.entries(values).map(
    ([key, value]) => [`/qubes-tools/${key}`, Buffer.from(value)] as const,
  );
  for (const [path, value] of wanted) guest.db.write(path, value);
  while (!wanted.every(([path, value]) => dom0.read(path)?.equals(value)))
    await new Promise((r) => setTimeout(r, 5));
}

describe('qubes.NotifyTools', () => {
  it('links the qrexec service to the misc socket', async () => {
    expect(await readlink(join(d.stateDir, 'qrexec-services', 'qubes.NotifyTools'))).toBe(misc());
  });

  it("reads upstream's five /qubes-tools/ keys and applies them as a feature request", async () => {
    const tpl = d.daemon.app.domains.get('tpl');
    const guest = await running('tpl', 5);
    await tools(guest, 'tpl', {
      os: 'Windows',
      'default-user': 'user',
      gui: '1',
      'gui-emulated': '',
      qrexec: '1',
      'supported-rpc.qubes.VMShell': '1',
    });
    events.length = 0;
    expect((await notifyTools('tpl')).toString('latin1')).toBe('0\0');
    // Read in upstream's order; an empty value and keys beyond the five are left out.
    expect(events.find((e) => e.name === 'features-request')?.args).toEqual({
      untrusted_features: "{'qrexec': '1', 'gui': '1', 'default-user': 'user', 'os': 'Windows'}",
    });
    // Windows with qrexec: upstream's WindowsFeatures adds its defaults.
    expect(features(tpl)).toEqual({
      qrexec: '1',
      gui: '1',
      os: 'Windows',
      'rpc-clipboard': '1',
      'stubdom-qrexec': '1',
      'audio-model': 'ich6',
      timezone: 'localtime',
      'no-monitor-layout': '1',
    });
    expect([tpl.props.get('maxmem'), tpl.props.get('qrexec_timeout')]).toEqual([0, 6000]);
    expect(events.map((e) => e.name)).toContain('template-postinstall');
  });

  it('refuses a value outside its safe set, closes on non-ASCII, and takes no argument or payload', async () => {
    const tpl = d.daemon.app.domains.get('tpl');
    const guest = await running('tpl', 5);
    await tools(guest, 'tpl', { qrexec: '1', os: 'Windows-10' });
    expect((await notifyTools('tpl')).toString('latin1')).toBe(
      exc('ProtocolError', `Value outside safe set: ${ALNUM}`),
    );
    await tools(guest, 'tpl', { os: Buffer.from([0x57, 0xc3, 0xa9]) });
    expect((await notifyTools('tpl')).length).toBe(0);
    await tools(guest, 'tpl', { os: 'x'.repeat(MAX_REQUESTED_VALUE + 1) });
    expect((await notifyTools('tpl')).toString('latin1')).toBe(exc('PermissionDenied', ''));
    expect(features(tpl)).toEqual({});
    expect(events.some((e) => e.name === 'features-request')).toBe(false);
    expect((await notifyTools('tpl', 'x')).toString('latin1')).toBe(
      exc('ProtocolError', 'unexpected argument'),
    );
    expect((await notifyTools('tpl', '', '1')).toString('latin1')).toBe(
      exc('ProtocolError', 'unexpected payload'),
    );
  });
});
