/**
 * What upstream's gui, audio and relay extensions keep in a running qube's QubesDB: the domain
 * id of its GUI and audio domains, and in a relay the remote name of each RemoteVM it relays for.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QubesDb } from '@odyssey/qubesdb';
import { SocketVchanTransport } from '@odyssey/vchan';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QubesDbHost } from '../../src/daemon/qubesdb-host.js';
import { App } from '../../src/model/app.js';
import type { Vm } from '../../src/model/vm.js';
import { noPools } from '../support/pools.js';

let dir: string;
let app: App;
let tpl: Vm;
let host: QubesDbHost;

function markRunning(vm: Vm, xid: number): void {
  vm.xid = xid;
  vm.powerState = xid < 0 ? 'Halted' : 'Running';
  app.events.fire(vm, 'property-reset:xid', { name: 'xid' });
}

function db(name: string): QubesDb {
  const found = host.database(name);
  if (!found) throw new Error(`${name} is not served`);
  return found;
}

const read = (name: string, key: string): string | undefined => db(name).read(key)?.toString();

function appVm(name: string): Vm {
  const vm = app.addVm('AppVM', { name, label: app.labels.get('red') });
  vm.props.set('template', tpl);
  return vm;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'odyssey-qdb-ext-'));
  app = new App(dir, { memoryMiB: 4096, cpus: 2 }, noPools);
  app.createAdminVm(app.labels.get('black'));
  tpl = app.addVm('TemplateVM', { name: 'tpl', label: app.labels.get('black') });
  host = new QubesDbHost({
    app,
    transport: new SocketVchanTransport({ localDomain: '0', dir: join(dir, 'vchan') }),
    timezone: null,
    log: () => undefined,
  });
});

afterEach(async () => {
  await host.close();
  await rm(dir, { recursive: true, force: true });
});

describe('relay.py', () => {
  it("gives a relay /remote/<remotevm>: the remote name, else the RemoteVM's own, and again on every Set", () => {
    const relay = appVm('relay');
    const far = app.addVm('RemoteVM', { name: 'far', label: app.labels.get('red') });
    const near = app.addVm('RemoteVM', { name: 'near', label: app.labels.get('red') });
    far.props.set('remote_name', 'myawesomevm');
    far.props.set('relayvm', relay);
    near.props.set('relayvm', relay);
    markRunning(relay, 5);
    expect(read('relay', '/remote/far')).toBe('myawesomevm');
    expect(read('relay', '/remote/near')).toBe('near');

    const seen: string[] = [];
    db('relay').watch('/remote/far', (path) => seen.push(path));
    far.props.set('relayvm', relay);
    expect(seen).toEqual(['/remote/far']);
    far.props.reset('remote_name');
    expect(read('relay', '/remote/far')).toBe('far');
    // Upstream leaves the entry of a RemoteVM no longer relayed behind; here it goes.
    far.props.reset('relayvm');
    expect(read('relay', '/remote/far')).toBeUndefined();
    expect(read('relay', '/remote/near')).toBe('near');
  });
});

describe('audio.py and gui.py', () => {
  it('give a qube the domain id of its audio domain while that runs', () => {
    const audio = appVm('sys-audio');
    const work = appVm('work');
    work.props.set('audiovm', audio);
    markRunning(work, 7);
    expect(read('work', '/qubes-audio-domain-xid')).toBeUndefined();
    markRunning(audio, 9);
    expect(read('work', '/qubes-audio-domain-xid')).toBe('9');
    work.props.set('audiovm', null);
    expect(read('work', '/qubes-audio-domain-xid')).toBeUndefined();
    work.props.reset('audiovm');
    expect(read('work', '/qubes-audio-domain-xid')).toBe('0');
    // A qube is not told of itself as its own audio domain.
    audio.props.set('audiovm', audio);
    expect(read('sys-audio', '/qubes-audio-domain-xid')).toBeUndefined();
  });

  it('tell a qube whose GUI and audio domain is dom0 that it is domain 0', () => {
    const work = appVm('work');
    markRunning(work, 7);
    expect(read('work', '/qubes-gui-domain-xid')).toBe('0');
    expect(read('work', '/qubes-audio-domain-xid')).toBe('0');
  });
});
