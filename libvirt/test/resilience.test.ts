import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ConnectionClosedError,
  Libvirt,
  LifecycleEventType,
  Reconnector,
  type DomainLifecycleEvent,
} from '../src/index.js';
import { skipReason, sleep, startDaemon, until, type TestDaemon } from './daemon.js';

const skip = skipReason();

describe.skipIf(skip)('dead daemons, keepalive and reconnect', () => {
  let daemon: TestDaemon;
  const clients: Libvirt[] = [];

  const client = async (keepalive: { intervalMs: number; count: number } | false) => {
    const lv = new Libvirt({ uri: 'test:///default', socketPath: daemon.socket, keepalive });
    clients.push(lv);
    await lv.connect();
    return lv;
  };

  const closed = (lv: Libvirt) => new Promise<Error | undefined>((resolve) => lv.once('close', resolve));

  beforeAll(async () => {
    daemon = await startDaemon();
  });

  afterEach(async () => {
    for (const lv of clients.splice(0)) await lv.close().catch(() => undefined);
  });

  afterAll(async () => {
    if (daemon) process.kill(daemon.pid, 'SIGCONT');
    await daemon?.stop();
  });

  it('keeps an idle connection alive with PING/PONG', async () => {
    // A second of unanswered PINGs would close it; three seconds idle show the PONGs keep it open,
    // and a daemon slowed by a loaded machine still has a second to answer each.
    const lv = await client({ intervalMs: 100, count: 10 });
    await sleep(3000);
    expect(lv.isConnected).toBe(true);
    expect(await lv.host.getType()).toBe('TEST');
  });

  it('notices a hung daemon through keepalive and rejects pending calls', async () => {
    const lv = await client({ intervalMs: 150, count: 2 });
    const gone = closed(lv);
    process.kill(daemon.pid, 'SIGSTOP');
    try {
      const pending = lv.host.getHostname().catch((e: unknown) => e);
      // The message says keepalive closed it; how soon depends on the machine's load, so it is not asserted.
      const err = await gone;
      expect(err).toBeInstanceOf(ConnectionClosedError);
      expect(err?.message).toMatch(/keepalive/);
      expect(await pending).toBeInstanceOf(ConnectionClosedError);
      expect(lv.isConnected).toBe(false);
      await expect(lv.host.getType()).rejects.toBeInstanceOf(ConnectionClosedError);
    } finally {
      process.kill(daemon.pid, 'SIGCONT');
    }
  });

  it('rejects every pending call and emits close when the daemon is killed', async () => {
    const lv = await client(false);
    const gone = closed(lv);
    // Freeze the daemon so the calls are certainly still in flight when it dies.
    process.kill(daemon.pid, 'SIGSTOP');
    const calls = Array.from({ length: 16 }, () => lv.domains.lookupByName('test').catch((e: unknown) => e));
    await sleep(50);
    process.kill(daemon.pid, 'SIGKILL');
    const err = await gone;
    expect(err).toBeInstanceOf(ConnectionClosedError);
    for (const r of await Promise.all(calls)) expect(r).toBeInstanceOf(ConnectionClosedError);
    await until(() => {
      try {
        process.kill(daemon.pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    await daemon.restart();
  });

  it('reconnects after a daemon restart and re-registers event callbacks', async () => {
    const lv = await client({ intervalMs: 500, count: 3 });
    const reconnector = new Reconnector(lv, { initialDelayMs: 50, maxDelayMs: 500 }).start();
    try {
      const sub = await lv.subscribeLifecycle();
      const events: DomainLifecycleEvent[] = [];
      sub.on('event', (e) => events.push(e));
      const reconnected = new Promise<number>((resolve) => reconnector.once('reconnected', resolve));
      const gone = closed(lv);

      await daemon.restart();
      expect(await gone).toBeInstanceOf(ConnectionClosedError);
      await reconnected;
      expect(lv.isConnected).toBe(true);

      // test:///default starts fresh in the new daemon; the old subscription must still fire.
      const dom = await lv.domains.defineXML(
        `<domain type='test'><name>after-restart</name><memory>65536</memory><os><type>hvm</type></os></domain>`,
      );
      await lv.domains.undefine(dom);
      await until(() => events.length >= 2, 5000, 'events after reconnect');
      expect(events.map((e) => e.event)).toEqual([LifecycleEventType.DEFINED, LifecycleEventType.UNDEFINED]);
      await sub.close();
    } finally {
      reconnector.stop();
    }
  });

  it('leaves a requested close alone', async () => {
    const lv = await client(false);
    const reconnector = new Reconnector(lv, { initialDelayMs: 10 }).start();
    const gone = closed(lv);
    await lv.close();
    expect(await gone).toBeUndefined();
    await sleep(100);
    expect(lv.isConnected).toBe(false);
    reconnector.stop();
  });
});
