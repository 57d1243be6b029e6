import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PowerState, VmmEvent } from '@odyssey/hal';
import { ErrorCode, LifecycleEventType, Proc, StoppedDetail, XdrReader, type Domain } from '@odyssey/libvirt';
import { until } from '../../libvirt/test/daemon.js';
import { FakeDaemon, xdr, type FakePeer } from '../../libvirt/test/fake-daemon.js';
import { LibvirtVmm } from '../src/index.js';
import { answerConnect, fakeFlavour, writeDomain } from './scripted-libvirtd.js';

/**
 * LibvirtVmm against a scripted daemon that floods it with lifecycle events: what it keeps per
 * domain and per event must stay bounded by the domains libvirt has, not by the events it sent.
 */

const CALLBACK = 5;

/** The domains the fake libvirtd has, by name; lookups of others fail with NO_DOMAIN. */
const domains = new Map<string, Domain>();
let lookups = 0;

function serve(peer: FakePeer): void {
  const list = (ds: Domain[]) =>
    xdr((w) => {
      w.uint(ds.length);
      for (const d of ds) writeDomain(w, d);
      w.uint(ds.length);
    });
  peer.autoAnswer = (call) => {
    if (answerConnect(peer, call, CALLBACK)) return;
    switch (call.header.procedure) {
      case Proc.CONNECT_LIST_ALL_DOMAINS:
        return peer.answer(call, list([...domains.values()]));
      case Proc.DOMAIN_LOOKUP_BY_NAME: {
        lookups++;
        const dom = domains.get(new XdrReader(call.payload).string());
        if (!dom) return peer.fail(call, ErrorCode.NO_DOMAIN, 'Domain not found');
        return peer.answer(
          call,
          xdr((w) => writeDomain(w, dom)),
        );
      }
      default:
        // CONNECT_OPEN, CONNECT_CLOSE, DEREGISTER_ANY: nothing to return.
        return peer.answer(call);
    }
  };
}

let uuids = 0;
const domain = (name: string, id = -1): Domain => ({
  name,
  uuid: `00000000-0000-4000-8000-${(++uuids).toString(16).padStart(12, '0')}`,
  id,
});

let afterStopRunning = 0;
let afterStopRuns = 0;
let releaseAfterStop: () => void = () => undefined;
let afterStopGate: Promise<void> = Promise.resolve();

const flavour = fakeFlavour({
  afterStop: async () => {
    afterStopRunning++;
    afterStopRuns++;
    await afterStopGate;
    afterStopRunning--;
  },
});

let daemon: FakeDaemon;
let vmm: LibvirtVmm;
let peer: FakePeer;

beforeAll(async () => {
  daemon = await FakeDaemon.start();
  daemon.serve = serve;
});

afterEach(async () => {
  releaseAfterStop();
  await vmm.close();
  daemon.dropPeers();
  domains.clear();
});

afterAll(async () => {
  await daemon.stop();
});

async function open(): Promise<void> {
  const connected = daemon.nextPeer();
  vmm = new LibvirtVmm(flavour, { uri: 'test:///default', socketPath: daemon.socket, log: () => undefined });
  await vmm.open();
  peer = await connected;
}

const known = () => (vmm as unknown as { known: Map<string, PowerState> }).known;

/** Resolves once the vmm has handled every event sent so far (a call's reply follows them). */
const routed = () => vmm.state('no-such-domain');

describe('LibvirtVmm under a flood of lifecycle events', () => {
  it('forgets domains libvirt no longer has, and keeps those it has', async () => {
    await open();
    lookups = 0;
    const kept = domain('kept');
    domains.set(kept.name, kept);
    const rounds = 2000;
    for (let i = 0; i < rounds; i++) {
      // A transient domain (libguestfs' appliance, say): gone once it stops.
      const transient = domain(`appliance-${i}`, 10 + i);
      peer.lifecycle(CALLBACK, transient, LifecycleEventType.STARTED);
      peer.lifecycle(CALLBACK, { ...transient, id: -1 }, LifecycleEventType.STOPPED, StoppedDetail.DESTROYED);
      // A persistent one someone else ran and undefined.
      const other = domain(`other-${i}`, 5000 + i);
      peer.lifecycle(CALLBACK, other, LifecycleEventType.STARTED);
      peer.lifecycle(CALLBACK, { ...other, id: -1 }, LifecycleEventType.STOPPED, StoppedDetail.SHUTDOWN);
      peer.lifecycle(CALLBACK, { ...other, id: -1 }, LifecycleEventType.UNDEFINED);
    }
    peer.lifecycle(CALLBACK, { ...kept, id: 9 }, LifecycleEventType.STARTED);
    peer.lifecycle(CALLBACK, kept, LifecycleEventType.STOPPED, StoppedDetail.SHUTDOWN);
    await routed();
    await until(() => known().size <= 1, 5000, 'the domains libvirt dropped to be forgotten').catch(
      () => undefined,
    );

    expect(known().size).toBe(1);
    expect(known().get('kept')).toBe('Halted');
    // One lookup per domain that went away (its stop and undefine coalesced), plus `kept` and
    // the barrier's.
    expect(lookups).toBeLessThanOrEqual(2 * rounds + 2);
  });

  it('reports at a reconnect the stop of a domain that went away meanwhile, then forgets it', async () => {
    await open();
    const gone = domain('gone', 7);
    domains.set(gone.name, gone);
    peer.lifecycle(CALLBACK, gone, LifecycleEventType.STARTED);
    await routed();
    expect(known().get('gone')).toBe('Running');
    const events: VmmEvent[] = [];
    const iterator = vmm.events()[Symbol.asyncIterator]();
    void (async () => {
      for (let e = await iterator.next(); !e.done; e = await iterator.next()) events.push(e.value);
    })();

    // It goes away while libvirtd is unreachable: no event tells of it.
    domains.delete(gone.name);
    const reconnected = daemon.nextPeer();
    daemon.dropPeers();
    peer = await reconnected;
    await until(() => events.length > 0, 10_000, 'the stop to be reported after the reconnect');
    await routed();

    expect(events).toEqual([{ type: 'stopped', name: 'gone', reason: 'unknown' }]);
    expect(known().has('gone')).toBe(false);
  });

  it('runs afterStop once at a time per domain, however many stop events come', async () => {
    afterStopGate = new Promise((resolve) => (releaseAfterStop = resolve));
    afterStopRuns = 0;
    await open();
    const busy = domain('busy');
    domains.set(busy.name, busy);
    const stops = 1000;
    for (let i = 0; i < stops; i++) {
      peer.lifecycle(CALLBACK, busy, LifecycleEventType.STOPPED, StoppedDetail.CRASHED);
    }
    await routed();

    expect(afterStopRunning).toBe(1);
    releaseAfterStop();
    await until(() => afterStopRunning === 0, 5000, 'afterStop to settle').catch(() => undefined);
    // The run that was going, and one more for the stops that came during it.
    expect(afterStopRuns).toBe(2);
  });
});
