/**
 * A netvm's QubesDB as upstream's netvm mixin fills it for its clients: the
 * connected addresses, each client's firewall under /qubes-firewall/<ip>/
 * replaced (rules, then the marker) on every firewall change, and expiry.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QubesDb } from '@odyssey/qubesdb';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QubesDbHost } from '../../src/daemon/qubesdb-host.js';
import { firewallQdbEntries } from '../../src/lifecycle/qubesdb-entries.js';
import { App } from '../../src/model/app.js';
import { parseApiRule } from '../../src/model/firewall.js';
import type { Vm } from '../../src/model/vm.js';
import { noPools } from '../support/pools.js';

let dir: string;
let app: App;
let netvm: Vm;
let work: Vm;
let host: QubesDbHost;

function markRunning(vm: Vm, xid: number): void {
  vm.xid = xid;
  vm.powerState = 'Running';
  app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
}

function db(): QubesDb {
  const found = host.database('sys-firewall');
  if (!found) throw new Error('sys-firewall is not served');
  return found;
}

const under = (prefix: string): Record<string, string> =>
  Object.fromEntries(
    db()
      .multiread(prefix)
      .map(([key, value]) => [key, value.toString()]),
  );

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-qdb-fw-'));
  app = new App(dir, { memoryMiB: 4096, cpus: 2 }, noPools);
  app.createAdminVm(app.labels.get('black'));
  const tpl = app.addVm('TemplateVM', { name: 'tpl', label: app.labels.get('black') });
  netvm = app.addVm('AppVM', { name: 'sys-firewall', label: app.labels.get('green') });
  netvm.props.set('template', tpl);
  netvm.props.set('provides_network', true);
  work = app.addVm('AppVM', { name: 'work', label: app.labels.get('red') });
  work.props.set('template', tpl);
  work.props.set('netvm', netvm);
  host = new QubesDbHost({
    app,
    transport: new SocketVchanTransport({ localDomain: '0', dir: join(dir, 'vchan') }),
    timezone: null,
    log: () => undefined,
  });
  markRunning(netvm, 3);
});

afterEach(async () => {
  await host.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a netvm's QubesDB", () => {
  it('lists every client, running or not, by name in /connected-ips, as upstream', () => {
    // Made after work, listed before it.
    const late = app.addVm('AppVM', { name: 'aa-late', label: app.labels.get('red') });
    late.props.set('template', work.props.get('template'));
    late.props.set('netvm', netvm);
    const ips = [late, work].map((vm) => String(vm.props.get('ip')));
    expect(db().read('/connected-ips')?.toString()).toBe(ips.join(' '));
    late.props.set('netvm', null);
    expect(db().read('/connected-ips')?.toString()).toBe(ips[1]);
  });

  it('publishes a starting client: its addresses, then its rules with the policy and the marker', () => {
    const ip = String(work.props.get('ip'));
    expect(db().read('/connected-ips')?.toString()).toBe(ip);
    expect(under(`/qubes-firewall/${ip}`)).toEqual({});
    markRunning(work, 4);
    expect(under(`/mapped-ip/${ip}/`)).toEqual({
      [`/mapped-ip/${ip}/visible-ip`]: ip,
      [`/mapped-ip/${ip}/visible-gateway`]: String(work.props.get('visible_gateway')),
    });
    expect(under(`/qubes-firewall/${ip}`)).toEqual({
      [`/qubes-firewall/${ip}`]: '',
      [`/qubes-firewall/${ip}/policy`]: 'drop',
      [`/qubes-firewall/${ip}/0000`]: 'action=accept',
    });
  });

  it("replaces a client's rules on Set and on Reload, the marker written last, and drops them when it stops", () => {
    markRunning(work, 4);
    const ip = String(work.props.get('ip'));
    const seen: string[] = [];
    db().watch('/qubes-firewall/', (path) => seen.push(path));
    work.firewall = [
      'action=accept proto=tcp dsthost=10.0.2.2 dstports=8000 comment=the server',
      'action=accept dst6=fd00::/8',
      'action=accept specialtarget=dns',
      'action=accept proto=icmp icmptype=8',
      'action=drop',
    ].map(parseApiRule);
    app.events.fire(work, 'firewall-changed');
    expect(under(`/qubes-firewall/${ip}/`)).toEqual({
      [`/qubes-firewall/${ip}/policy`]: 'drop',
      [`/qubes-firewall/${ip}/0000`]: 'action=accept dst4=10.0.2.2/32 proto=tcp dstports=8000-8000',
      [`/qubes-firewall/${ip}/0002`]: 'action=accept specialtarget=dns',
      [`/qubes-firewall/${ip}/0003`]: 'action=accept proto=icmp icmptype=8',
      [`/qubes-firewall/${ip}/0004`]: 'action=drop',
    });
    expect(seen.at(-1)).toBe(`/qubes-firewall/${ip}`);
    seen.length = 0;
    app.events.fire(work, 'firewall-changed');
    expect(seen.filter((path) => path === `/qubes-firewall/${ip}`)).toHaveLength(1);
    expect(seen.at(-1)).toBe(`/qubes-firewall/${ip}`);
    work.xid = -1;
    work.powerState = 'Halted';
    app.events.fire(work, 'domain-shutdown');
    expect(under('/qubes-firewall/')).toEqual({});
    expect(db().read('/connected-ips')?.toString()).toBe(ip);
  });

  it('gives a running client whose firewall.xml could not be loaded the drop policy alone, until rules are set', () => {
    markRunning(work, 4);
    const ip = String(work.props.get('ip'));
    // As after a daemon restart under a running client whose file broke meanwhile.
    work.firewallState = { unloadable: 'not well-formed XML (line 1): Start tag expected.' };
    app.events.fire(work, 'firewall-changed');
    expect(under(`/qubes-firewall/${ip}`)).toEqual({
      [`/qubes-firewall/${ip}`]: '',
      [`/qubes-firewall/${ip}/policy`]: 'drop',
    });
    expect(() => work.firewall).toThrow("firewall.xml of 'work' could not be loaded");
    work.firewall = [parseApiRule('action=accept specialtarget=dns')];
    app.events.fire(work, 'firewall-changed');
    expect(under(`/qubes-firewall/${ip}/`)).toEqual({
      [`/qubes-firewall/${ip}/policy`]: 'drop',
      [`/qubes-firewall/${ip}/0000`]: 'action=accept specialtarget=dns',
    });
  });

  it('leaves out expired rules and rules of the other family, keeping their numbers', () => {
    const rules = ['action=accept dst4=10.1.0.0/16 expire=100', 'action=accept dst6=::1', 'action=drop'].map(
      parseApiRule,
    );
    expect(firewallQdbEntries(rules, 4, 50)).toEqual([
      ['policy', 'drop'],
      ['0000', 'action=accept dst4=10.1.0.0/16'],
      ['0002', 'action=drop'],
    ]);
    expect(firewallQdbEntries(rules, 4, 101)).toEqual([
      ['policy', 'drop'],
      ['0002', 'action=drop'],
    ]);
    expect(firewallQdbEntries(rules, 6, 50)).toEqual([
      ['policy', 'drop'],
      ['0001', 'action=accept dst6=::1/128'],
      ['0002', 'action=drop'],
    ]);
  });

  it('takes an expired rule away when it expires, announcing firewall-changed', async () => {
    markRunning(work, 4);
    const ip = String(work.props.get('ip'));
    const expire = Math.floor(Date.now() / 1000) + 1;
    work.firewall = [`action=accept dst4=10.9.0.0/16 expire=${expire}`, 'action=drop'].map(parseApiRule);
    app.events.fire(work, 'firewall-changed');
    expect(db().read(`/qubes-firewall/${ip}/0000`)?.toString()).toBe('action=accept dst4=10.9.0.0/16');
    const changed = new Promise<void>((resolve) => {
      const off = app.events.subscribe((event) => {
        if (event.name === 'firewall-changed' && event.subject === work) {
          off();
          resolve();
        }
      });
    });
    await changed;
    expect(under(`/qubes-firewall/${ip}/`)).toEqual({
      [`/qubes-firewall/${ip}/policy`]: 'drop',
      [`/qubes-firewall/${ip}/0001`]: 'action=drop',
    });
  });
});
