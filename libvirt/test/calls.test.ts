import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainState,
  ErrorCode,
  LibvirtError,
  Libvirt,
  LifecycleEventType,
  ListDomainsFlags,
  StoppedDetail,
  parseVersion,
  type DomainLifecycleEvent,
} from '../src/index.js';
import { skipReason, startDaemon, until, type TestDaemon } from './daemon.js';

const skip = skipReason();

const domainXml = (name: string) => `<domain type='test'>
  <name>${name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>`;

describe.skipIf(skip)('test:///default through a real libvirtd', () => {
  let daemon: TestDaemon;
  let lv: Libvirt;

  beforeAll(async () => {
    daemon = await startDaemon();
    lv = new Libvirt({ uri: 'test:///default', socketPath: daemon.socket });
    await lv.connect();
  });

  afterAll(async () => {
    await lv?.close();
    await daemon?.stop();
  });

  it('answers host calls', async () => {
    expect(await lv.host.getUri()).toBe('test:///default');
    expect(await lv.host.getType()).toBe('TEST');
    expect(parseVersion(await lv.host.getLibVersion()).major).toBeGreaterThanOrEqual(9);
    expect(await lv.host.getVersion()).toBeGreaterThan(0n);
    expect(await lv.host.getHostname()).toBeTruthy();
    expect(await lv.host.getCapabilities()).toContain('<capabilities>');
    const node = await lv.host.nodeGetInfo();
    expect(node.model).toBe('i686');
    expect(node.cpus).toBe(16);
  });

  it('looks up the built-in domain by name, uuid and id', async () => {
    const byName = await lv.domains.lookupByName('test');
    expect(byName.id).toBe(1);
    expect(await lv.domains.lookupByUuid(byName.uuid)).toEqual(byName);
    expect(await lv.domains.lookupById(1)).toEqual(byName);
    const info = await lv.domains.getInfo(byName);
    expect(info.state).toBe(DomainState.RUNNING);
    expect(info.vcpus).toBe(2);
    expect(await lv.domains.getXMLDesc(byName)).toContain('<name>test</name>');
    expect((await lv.domains.listAll(ListDomainsFlags.ACTIVE)).map((d) => d.name)).toContain('test');
  });

  it('reports structured errors: code 42, "Domain not found"', async () => {
    const err = await lv.domains.lookupByName('no-such-domain').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    const e = err as LibvirtError;
    expect(e.code).toBe(ErrorCode.NO_DOMAIN);
    expect(e.domain).toBe(12); // VIR_FROM_TEST
    expect(e.message).toMatch(/Domain not found/);
    expect(e.level).toBe(2);
    // The connection keeps working after an error.
    expect((await lv.domains.lookupByName('test')).name).toBe('test');
  });

  it('opens read-only connections on the -ro socket', async () => {
    const ro = new Libvirt({ uri: 'test:///default', socketPath: `${daemon.socket}-ro`, readOnly: true });
    await ro.connect();
    try {
      expect((await ro.domains.lookupByName('test')).id).toBe(1);
      const err = await ro.domains.defineXML(domainXml('denied')).catch((e: unknown) => e);
      expect((err as LibvirtError).code).toBe(ErrorCode.OPERATION_DENIED);
    } finally {
      await ro.close();
    }
  });

  it('rejects calls before connect and after close without throwing synchronously', async () => {
    const idle = new Libvirt({ uri: 'test:///default', socketPath: daemon.socket });
    await expect(idle.host.getType()).rejects.toThrow(/not connected/);
    await expect(idle.domains.lookupByUuid('not-a-uuid')).rejects.toThrow(/not connected/);
    await idle.connect();
    await expect(idle.domains.lookupByUuid('not-a-uuid')).rejects.toThrow(/invalid UUID/);
    await idle.close();
    await expect(idle.host.getType()).rejects.toThrow(/not connected/);
  });

  it('multiplexes 64 calls in flight and matches each reply to its call', async () => {
    const names = Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? 'test' : `missing-${i}`));
    const results = await Promise.allSettled(names.map((n) => lv.domains.lookupByName(n)));
    results.forEach((r, i) => {
      if (i % 2 === 0) expect(r.status === 'fulfilled' && r.value.name).toBe('test');
      else expect(r.status === 'rejected' && (r.reason as LibvirtError).str1).toMatch(/Domain not found/);
    });
  });

  it('defines, starts, pauses, destroys and undefines with lifecycle events', async () => {
    const sub = await lv.subscribeLifecycle();
    const seen: DomainLifecycleEvent[] = [];
    sub.on('event', (ev) => seen.push(ev));
    const name = `odyssey-test-${process.pid}`;
    const defined = await lv.domains.defineXML(domainXml(name));
    expect(defined.id).toBe(-1);
    const started = await lv.domains.create(defined);
    expect(started.id).toBeGreaterThan(0);
    expect((await lv.domains.getState(started)).state).toBe(DomainState.RUNNING);
    await lv.domains.suspend(started);
    expect((await lv.domains.getState(started)).state).toBe(DomainState.PAUSED);
    await lv.domains.resume(started);
    await lv.domains.destroy(started);
    expect((await lv.domains.getState(defined)).state).toBe(DomainState.SHUTOFF);
    await lv.domains.undefine(defined);
    await until(() => seen.length >= 6, 5000, 'six lifecycle events');
    await sub.close();
    const ours = seen.filter((e) => e.domain.name === name).map((e) => e.event);
    expect(ours).toEqual([
      LifecycleEventType.DEFINED,
      LifecycleEventType.STARTED,
      LifecycleEventType.SUSPENDED,
      LifecycleEventType.RESUMED,
      LifecycleEventType.STOPPED,
      LifecycleEventType.UNDEFINED,
    ]);
    expect(seen.find((e) => e.event === LifecycleEventType.STOPPED)?.detail).toBe(StoppedDetail.DESTROYED);
    const err = await lv.domains.lookupByName(name).catch((e: LibvirtError) => e);
    expect((err as LibvirtError).code).toBe(ErrorCode.NO_DOMAIN);
  });

  it('delivers events of one domain to an async iterator', async () => {
    const name = `odyssey-iter-${process.pid}`;
    const dom = await lv.domains.defineXML(domainXml(name));
    const sub = await lv.subscribeLifecycle(dom);
    const events: number[] = [];
    const consumer = (async () => {
      for await (const ev of sub) {
        events.push(ev.event);
        if (ev.event === LifecycleEventType.UNDEFINED) break;
      }
    })();
    await lv.domains.create(dom);
    await lv.domains.destroy(dom);
    await lv.domains.undefine(dom);
    await consumer;
    expect(events).toEqual([
      LifecycleEventType.STARTED,
      LifecycleEventType.STOPPED,
      LifecycleEventType.UNDEFINED,
    ]);
  });

  it('measures call rates (GetInfo, 1 and 64 in flight)', async () => {
    const dom = await lv.domains.lookupByName('test');
    const n = 4000;
    let t = performance.now();
    for (let i = 0; i < n; i++) await lv.domains.getInfo(dom);
    const awaited = n / ((performance.now() - t) / 1000);
    t = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next++ < n) await lv.domains.getInfo(dom);
      }),
    );
    const parallel = n / ((performance.now() - t) / 1000);
    console.log(
      `[libvirt perf] DOMAIN_GET_INFO on test:///default: ${Math.round(awaited)} calls/s awaited, ` +
        `${Math.round(parallel)} calls/s with 64 in flight (${n} calls each)`,
    );
    expect(parallel).toBeGreaterThan(0);
  });
});
