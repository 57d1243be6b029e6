import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PowerState, VmmEvent } from '@odyssey/hal';
import {
  DomainState,
  ErrorCode,
  LifecycleEventType,
  Proc,
  StoppedDetail,
  XdrReader,
  type Domain,
} from '@odyssey/libvirt';
import type { Packet } from '../../libvirt/src/packet.js';
import { until } from '../../libvirt/test/daemon.js';
import { FakeDaemon, xdr, type FakePeer } from '../../libvirt/test/fake-daemon.js';
import { LibvirtVmm } from '../src/index.js';
import { answerConnect, fakeFlavour, writeDomain } from './scripted-libvirtd.js';

/**
 * Power states LibvirtVmm reads from libvirt where the test driver has no way to put a domain:
 * active yet SHUTOFF (libxl cleaning up after the guest stopped), SHUTDOWN (QEMU's guest has shut
 * down, its process not yet ended), a create still in progress. A scripted libvirtd answers.
 */

const CALLBACK = 3;

interface FakeDomain {
  dom: Domain;
  state: number;
  saved: boolean;
}

/** The domains the fake libvirtd has, by name, in the order it lists them. */
const domains = new Map<string, FakeDomain>();
/** Procedures the client called, in order, with the domain named. */
const calls: { procedure: number; name: string }[] = [];
/** Called as DOMAIN_GET_INFO is answered (a domain that changes right after its state is read). */
let afterInfo: (d: FakeDomain) => void = () => undefined;
/** DOMAIN_CREATE_WITH_FLAGS calls held until a test answers them. */
const heldCreates: Packet[] = [];

function serve(peer: FakePeer): void {
  peer.autoAnswer = (call) => {
    const { procedure } = call.header;
    const named = () => new XdrReader(call.payload).string();
    const target = (): FakeDomain | undefined => {
      const name = named();
      calls.push({ procedure, name });
      const d = domains.get(name);
      if (!d)
        peer.fail(call, ErrorCode.NO_DOMAIN, `Domain not found: no domain with matching name '${name}'`);
      return d;
    };
    if (answerConnect(peer, call, CALLBACK)) return;
    switch (procedure) {
      case Proc.CONNECT_LIST_ALL_DOMAINS: {
        const all = [...domains.values()];
        return peer.answer(
          call,
          xdr((w) => {
            w.uint(all.length);
            for (const d of all) writeDomain(w, d.dom);
            w.uint(all.length);
          }),
        );
      }
      case Proc.DOMAIN_LOOKUP_BY_NAME: {
        const d = target();
        if (d)
          peer.answer(
            call,
            xdr((w) => writeDomain(w, d.dom)),
          );
        return;
      }
      case Proc.DOMAIN_GET_INFO: {
        const d = target();
        if (!d) return;
        peer.answer(
          call,
          xdr((w) => w.uint(d.state).uhyper(131072).uhyper(131072).uint(1).uhyper(0)),
        );
        afterInfo(d);
        return;
      }
      case Proc.DOMAIN_GET_STATE: {
        const d = target();
        if (d)
          peer.answer(
            call,
            xdr((w) => w.int(d.state).int(0)),
          );
        return;
      }
      case Proc.DOMAIN_HAS_MANAGED_SAVE_IMAGE: {
        const d = target();
        if (d)
          peer.answer(
            call,
            xdr((w) => w.int(d.saved ? 1 : 0)),
          );
        return;
      }
      case Proc.DOMAIN_CREATE_WITH_FLAGS:
        if (target()) heldCreates.push(call);
        return;
      case Proc.DOMAIN_SUSPEND: {
        const d = target();
        if (!d) return;
        d.state = DomainState.PAUSED;
        return peer.answer(call);
      }
      case Proc.DOMAIN_MANAGED_SAVE: {
        const d = target();
        if (!d) return;
        Object.assign(d, { state: DomainState.SHUTOFF, saved: true, dom: { ...d.dom, id: -1 } });
        return peer.answer(call);
      }
      default:
        // CONNECT_OPEN, CONNECT_CLOSE, DEREGISTER_ANY: nothing to return.
        return peer.answer(call);
    }
  };
}

let uuids = 0;
function add(name: string, id: number, state: number, saved = false): FakeDomain {
  const uuid = `00000000-0000-4000-8000-${(++uuids).toString(16).padStart(12, '0')}`;
  const d: FakeDomain = { dom: { name, uuid, id }, state, saved };
  domains.set(name, d);
  return d;
}

const flavour = fakeFlavour();

let daemon: FakeDaemon;
let vmm: LibvirtVmm;
let peer: FakePeer;
let events: VmmEvent[];

beforeAll(async () => {
  daemon = await FakeDaemon.start();
  daemon.serve = serve;
});

afterEach(async () => {
  await vmm.close();
  daemon.dropPeers();
  domains.clear();
  calls.length = 0;
  heldCreates.length = 0;
  afterInfo = () => undefined;
});

afterAll(async () => {
  await daemon.stop();
});

async function open(): Promise<void> {
  const connected = daemon.nextPeer();
  vmm = new LibvirtVmm(flavour, { uri: 'test:///default', socketPath: daemon.socket, log: () => undefined });
  await vmm.open();
  peer = await connected;
  events = [];
  const iterator = vmm.events()[Symbol.asyncIterator]();
  void (async () => {
    for (let e = await iterator.next(); !e.done; e = await iterator.next()) events.push(e.value);
  })();
}

const known = () => (vmm as unknown as { known: Map<string, PowerState> }).known;

/** Resolves once the vmm has handled every event sent so far (a call's reply follows them). */
const routed = () => vmm.state('no-such-domain');

/**
 * Drops the connection; resolves once the vmm has reconnected and compared every domain. The
 * domain `marker`, listed last, runs before and is shut off after: its stop, published by that
 * comparison, tells that the domains listed before it were compared.
 */
async function reconnect(): Promise<void> {
  const marker = domains.get('marker');
  if (!marker) throw new Error('add the marker domain last');
  Object.assign(marker, { state: DomainState.SHUTOFF, dom: { ...marker.dom, id: -1 } });
  const reconnected = daemon.nextPeer();
  daemon.dropPeers();
  peer = await reconnected;
  await until(() => events.some((e) => e.name === 'marker'), 10_000, 'the comparison after the reconnect');
}

describe('LibvirtVmm power states', () => {
  it('reads an active domain libvirt has as SHUTOFF as Dying, with its id', async () => {
    add('dying', 12, DomainState.SHUTOFF);
    add('halting', 13, DomainState.SHUTDOWN);
    add('crashed', 14, DomainState.CRASHED);
    add('pmsuspended', 15, DomainState.PMSUSPENDED);
    add('halted', -1, DomainState.SHUTOFF);
    add('saved', -1, DomainState.SHUTOFF, true);
    await open();

    expect(await vmm.state('dying')).toMatchObject({ state: 'Dying', xid: 12 });
    expect(await vmm.state('halting')).toMatchObject({ state: 'Halting', xid: 13 });
    expect(await vmm.state('crashed')).toMatchObject({ state: 'Crashed', xid: 14 });
    expect(await vmm.state('pmsuspended')).toMatchObject({ state: 'Suspended', xid: 15 });
    expect(await vmm.state('halted')).toEqual({
      state: 'Halted',
      xid: -1,
      memoryKb: 0,
      memoryMaxKb: 0,
      cpuTimeNs: 0,
    });
    expect(await vmm.state('saved')).toMatchObject({ state: 'Suspended', xid: -1 });
    // The active domain's save image is not asked about: only an inactive one is Suspended by it.
    expect(
      calls.filter((c) => c.procedure === Proc.DOMAIN_HAS_MANAGED_SAVE_IMAGE).map((c) => c.name),
    ).toEqual(['halted', 'saved', 'halted', 'saved']);
  });

  it('reads a domain that finished stopping just after its state was read as Halted, not Dying', async () => {
    const d = add('ending', 21, DomainState.SHUTOFF);
    await open();
    afterInfo = (read) => {
      if (read === d) d.dom = { ...d.dom, id: -1 };
    };
    expect(await vmm.state('ending')).toMatchObject({ state: 'Halted', xid: -1 });
  });

  it("remembers libvirt's SHUTDOWN event as Halting, publishing nothing until the stop", async () => {
    const d = add('vm', 5, DomainState.RUNNING);
    await open();
    expect(known().get('vm')).toBe('Running');

    d.state = DomainState.SHUTDOWN;
    peer.lifecycle(CALLBACK, d.dom, LifecycleEventType.SHUTDOWN, 1);
    await routed();
    expect(known().get('vm')).toBe('Halting');
    expect((await vmm.state('vm')).state).toBe('Halting');
    expect(events).toEqual([]);

    Object.assign(d, { state: DomainState.SHUTOFF, dom: { ...d.dom, id: -1 } });
    peer.lifecycle(CALLBACK, d.dom, LifecycleEventType.STOPPED, StoppedDetail.SHUTDOWN);
    await routed();
    expect(known().get('vm')).toBe('Halted');
    expect(events).toEqual([{ type: 'stopped', name: 'vm', reason: 'shutdown' }]);
  });

  it('publishes no stop at a reconnect for a domain still active (Halting, Dying, Crashed)', async () => {
    const halting = add('halting', 5, DomainState.RUNNING);
    const dying = add('dying', 6, DomainState.RUNNING);
    const crashed = add('crashed', 7, DomainState.RUNNING);
    add('marker', 8, DomainState.RUNNING);
    await open();

    // While libvirtd is unreachable they go down, and no event says so.
    halting.state = DomainState.SHUTDOWN;
    dying.state = DomainState.SHUTOFF;
    crashed.state = DomainState.CRASHED;
    await reconnect();

    expect(events).toEqual([{ type: 'stopped', name: 'marker', reason: 'unknown' }]);
    expect(known().get('halting')).toBe('Halting');
    expect(known().get('dying')).toBe('Dying');
    expect(known().get('crashed')).toBe('Crashed');

    // Their stops come as events, each published once.
    for (const d of [halting, dying, crashed]) {
      Object.assign(d, { state: DomainState.SHUTOFF, dom: { ...d.dom, id: -1 } });
      peer.lifecycle(CALLBACK, d.dom, LifecycleEventType.STOPPED, StoppedDetail.SHUTDOWN);
    }
    await routed();
    expect(events.slice(1)).toEqual(
      ['halting', 'dying', 'crashed'].map((name) => ({ type: 'stopped', name, reason: 'shutdown' })),
    );
  });

  it('publishes at a reconnect the stop of a domain Halting before it', async () => {
    const d = add('vm', 5, DomainState.SHUTDOWN);
    add('marker', 8, DomainState.RUNNING);
    await open();
    expect(known().get('vm')).toBe('Halting');

    Object.assign(d, { state: DomainState.SHUTOFF, dom: { ...d.dom, id: -1 } });
    await reconnect();

    expect(events).toEqual([
      { type: 'stopped', name: 'vm', reason: 'unknown' },
      { type: 'stopped', name: 'marker', reason: 'unknown' },
    ]);
  });

  it('refuses pause and suspend while libvirt still creates the domain, and pauses it once started', async () => {
    const d = add('vm', -1, DomainState.SHUTOFF);
    await open();

    const started = vmm.start('vm');
    await until(() => heldCreates.length === 1, 5000, 'the create call');
    // libvirt would take these after its create job and pause (or save) the domain just started.
    await expect(vmm.pause('vm')).rejects.toMatchObject({
      code: 'invalid-state',
      message: expect.stringContaining('still starting'),
    });
    await expect(vmm.suspend('vm')).rejects.toMatchObject({ code: 'invalid-state' });
    expect(calls.map((c) => c.procedure)).not.toContain(Proc.DOMAIN_SUSPEND);
    expect(calls.map((c) => c.procedure)).not.toContain(Proc.DOMAIN_MANAGED_SAVE);

    Object.assign(d, { state: DomainState.RUNNING, dom: { ...d.dom, id: 9 } });
    peer.answer(
      heldCreates[0] as Packet,
      xdr((w) => writeDomain(w, d.dom)),
    );
    await started;
    expect((await vmm.state('vm')).state).toBe('Running');

    await vmm.pause('vm');
    expect(calls.map((c) => c.procedure)).toContain(Proc.DOMAIN_SUSPEND);
    expect((await vmm.state('vm')).state).toBe('Paused');
  });
});
