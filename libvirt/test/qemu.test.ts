import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DomainState,
  ErrorCode,
  LibvirtError,
  Libvirt,
  LifecycleEventType,
  PoolState,
  StartedDetail,
  StoppedDetail,
  VolType,
  type DomainLifecycleEvent,
  type StoragePool,
} from '../src/index.js';
import { skipReason, sleep, startDaemon, until, type TestDaemon } from './daemon.js';

const skip = skipReason(['qemu-system-x86_64']);
const MiB = 1024 * 1024;

/** TCG, because this machine's KVM cannot run guests; no disk, so SeaBIOS just idles. */
const vmXml = (name: string) => `<domain type='qemu'>
  <name>${name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices><memballoon model='none'/></devices>
</domain>`;

/** `size` random bytes generated on the fly, hashed as they go, never held in memory at once. */
function randomSource(size: number, hash: ReturnType<typeof createHash>): Readable {
  let left = size;
  return new Readable({
    highWaterMark: MiB,
    read() {
      if (left === 0) return void this.push(null);
      const chunk = randomBytes(Math.min(MiB, left));
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
}

function hashSink(hash: ReturnType<typeof createHash>): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb();
    },
  });
}

describe.skipIf(skip)('qemu:///system through a real libvirtd', () => {
  let daemon: TestDaemon;
  let lv: Libvirt;
  let poolDir: string;
  let pool: StoragePool | undefined;
  const vmName = `odyssey-lv-${process.pid}`;

  beforeAll(async () => {
    daemon = await startDaemon();
    lv = new Libvirt({ uri: 'qemu:///system', socketPath: daemon.socket });
    await lv.connect();
    poolDir = mkdtempSync(join(tmpdir(), 'odyssey-pool-'));
    chmodSync(poolDir, 0o755);
  });

  afterAll(async () => {
    if (lv?.isConnected) {
      const dom = await lv.domains.lookupByName(vmName).catch(() => undefined);
      if (dom) {
        await lv.domains.destroy(dom).catch(() => undefined);
        await lv.domains.undefine(dom).catch(() => undefined);
      }
      if (pool) {
        for (const vol of await lv.pools.listVolumes(pool)) await lv.volumes.delete(vol);
        await lv.pools.destroy(pool).catch(() => undefined);
        await lv.pools.undefine(pool);
      }
      await lv.close();
    }
    await daemon?.stop();
    if (poolDir) rmSync(poolDir, { recursive: true, force: true });
  });

  it('runs a real TCG guest through define, start, pause, destroy and undefine', async () => {
    expect(await lv.host.getType()).toBe('QEMU');
    const sub = await lv.subscribeLifecycle();
    const events: DomainLifecycleEvent[] = [];
    sub.on('event', (e) => {
      if (e.domain.name === vmName) events.push(e);
    });

    const dom = await lv.domains.defineXML(vmXml(vmName));
    expect((await lv.domains.getState(dom)).state).toBe(DomainState.SHUTOFF);
    const running = await lv.domains.create(dom);
    expect(running.id).toBeGreaterThan(0);
    expect((await lv.domains.getState(running)).state).toBe(DomainState.RUNNING);
    expect(await lv.domains.getXMLDesc(running)).toMatch(/<domain type='qemu' id='\d+'>/);

    await sleep(300);
    const info = await lv.domains.getInfo(running);
    expect(info.state).toBe(DomainState.RUNNING);
    expect(info.memory).toBe(32n * 1024n);
    expect(info.cpuTime).toBeGreaterThan(0n);
    const stats = await lv.domains.getCpuStats(running);
    expect(typeof stats.cpu_time).toBe('bigint');

    await lv.domains.suspend(running);
    expect((await lv.domains.getState(running)).state).toBe(DomainState.PAUSED);
    await lv.domains.resume(running);
    expect((await lv.domains.getState(running)).state).toBe(DomainState.RUNNING);

    // Managed save stops the guest with its memory on disk; the next start restores it.
    await lv.domains.managedSave(running);
    expect((await lv.domains.getState(dom)).state).toBe(DomainState.SHUTOFF);
    expect(await lv.domains.hasManagedSaveImage(dom)).toBe(true);
    const restored = await lv.domains.create(dom);
    expect((await lv.domains.getState(restored)).state).toBe(DomainState.RUNNING);
    expect(await lv.domains.hasManagedSaveImage(dom)).toBe(false);

    await lv.domains.destroy(restored);
    expect((await lv.domains.getState(dom)).state).toBe(DomainState.SHUTOFF);
    await lv.domains.undefine(dom);
    await until(
      () => events.some((e) => e.event === LifecycleEventType.UNDEFINED),
      10_000,
      'UNDEFINED event',
    );
    await sub.close();

    const kinds = events.map((e) => e.event);
    expect(kinds[0]).toBe(LifecycleEventType.DEFINED);
    expect(kinds).toContain(LifecycleEventType.STARTED);
    expect(kinds).toContain(LifecycleEventType.SUSPENDED);
    expect(kinds).toContain(LifecycleEventType.RESUMED);
    const stops = events.filter((e) => e.event === LifecycleEventType.STOPPED).map((e) => e.detail);
    expect(stops).toEqual([StoppedDetail.SAVED, StoppedDetail.DESTROYED]);
    const starts = events.filter((e) => e.event === LifecycleEventType.STARTED).map((e) => e.detail);
    expect(starts).toEqual([StartedDetail.BOOTED, StartedDetail.RESTORED]);
    expect(kinds.at(-1)).toBe(LifecycleEventType.UNDEFINED);
    expect(kinds.indexOf(LifecycleEventType.STARTED)).toBeLessThan(kinds.indexOf(LifecycleEventType.STOPPED));
  });

  it('manages a dir pool and its volumes', async () => {
    const name = `odyssey-pool-${process.pid}`;
    pool = await lv.pools.defineXML(
      `<pool type='dir'><name>${name}</name><target><path>${poolDir}</path></target></pool>`,
    );
    await lv.pools.build(pool);
    await lv.pools.create(pool);
    expect((await lv.pools.getInfo(pool)).state).toBe(PoolState.RUNNING);
    expect(await lv.pools.lookupByName(name)).toEqual(pool);
    expect(await lv.pools.lookupByUuid(pool.uuid)).toEqual(pool);
    expect((await lv.pools.listAll()).map((p) => p.name)).toContain(name);
    expect(await lv.pools.getXMLDesc(pool)).toContain(poolDir);

    const vol = await lv.volumes.createXML(
      pool,
      `<volume><name>small.raw</name><capacity unit='bytes'>${MiB}</capacity><target><format type='raw'/></target></volume>`,
    );
    const path = join(poolDir, 'small.raw');
    expect(await lv.volumes.getPath(vol)).toBe(path);
    expect(await lv.volumes.lookupByPath(path)).toEqual(vol);
    expect(await lv.volumes.lookupByName(pool, 'small.raw')).toEqual(vol);
    expect(await lv.volumes.lookupByKey(vol.key)).toEqual(vol);
    const info = await lv.volumes.getInfo(vol);
    expect(info.type).toBe(VolType.FILE);
    expect(info.capacity).toBe(BigInt(MiB));
    await lv.pools.refresh(pool);
    expect((await lv.pools.listVolumes(pool)).map((v) => v.name)).toEqual(['small.raw']);
    await lv.volumes.delete(vol);
    const err = await lv.volumes.lookupByName(pool, 'small.raw').catch((e: unknown) => e);
    expect((err as LibvirtError).code).toBe(ErrorCode.NO_STORAGE_VOL);
  });

  it('uploads 64 MiB with backpressure and downloads it back, both sha256-checked', async () => {
    expect(pool).toBeDefined();
    const p = pool as StoragePool;
    const size = 64 * MiB;
    const vol = await lv.volumes.createXML(
      p,
      `<volume><name>big.raw</name><capacity unit='bytes'>${size}</capacity><target><format type='raw'/></target></volume>`,
    );

    const sent = createHash('sha256');
    let t = performance.now();
    await pipeline(randomSource(size, sent), await lv.volumes.upload(vol));
    const uploadS = (performance.now() - t) / 1000;
    const expected = sent.digest('hex');

    const onDisk = createHash('sha256');
    await pipeline(createReadStream(await lv.volumes.getPath(vol)), hashSink(onDisk));
    expect(onDisk.digest('hex')).toBe(expected);

    const got = createHash('sha256');
    t = performance.now();
    await pipeline(await lv.volumes.download(vol), hashSink(got));
    const downloadS = (performance.now() - t) / 1000;
    expect(got.digest('hex')).toBe(expected);
    console.log(
      `[libvirt perf] 64 MiB volume (random data, sha256 in the loop): upload ${(64 / uploadS).toFixed(0)} MiB/s, ` +
        `download ${(64 / downloadS).toFixed(0)} MiB/s`,
    );
    // The connection is still usable for ordinary calls after both streams.
    expect((await lv.volumes.getInfo(vol)).capacity).toBe(BigInt(size));
  });

  it('bounds download buffering for a slow reader without stalling the connection for good', async () => {
    const vol = await lv.volumes.lookupByName(pool as StoragePool, 'big.raw');
    const stream = await lv.volumes.download(vol);
    let maxBuffered = 0;
    let total = 0;
    const hash = createHash('sha256');
    await pipeline(
      stream,
      new Writable({
        highWaterMark: 64 * 1024,
        write(chunk: Buffer, _enc, cb) {
          maxBuffered = Math.max(maxBuffered, stream.readableLength);
          total += chunk.length;
          hash.update(chunk);
          // A slow consumer for the first few MiB.
          if (total < 4 * MiB) setTimeout(cb, 2);
          else cb();
        },
      }),
    );
    expect(total).toBe(64 * MiB);
    // Buffered data stays around the stream's high-water mark (1 MiB) instead of growing to 64 MiB.
    expect(maxBuffered).toBeLessThanOrEqual(2 * MiB);
    expect(await lv.host.getType()).toBe('QEMU');
  });

  it('reports a daemon-side stream error on upload', async () => {
    const vol = await lv.volumes.lookupByName(pool as StoragePool, 'big.raw');
    // The daemon refuses data beyond the announced length.
    const upload = await lv.volumes.upload(vol, { offset: 0, length: MiB });
    const err = await pipeline(randomSource(4 * MiB, createHash('sha256')), upload).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((await lv.volumes.getInfo(vol)).capacity).toBe(BigInt(64 * MiB));
  });

  it('aborts a download the reader abandons', async () => {
    const vol = await lv.volumes.lookupByName(pool as StoragePool, 'big.raw');
    const stream = await lv.volumes.download(vol);
    for await (const chunk of stream) {
      expect((chunk as Buffer).length).toBeGreaterThan(0);
      break;
    }
    expect(stream.destroyed).toBe(true);
    // The daemon dropped the stream and the connection carries on.
    expect((await lv.volumes.getInfo(vol)).type).toBe(VolType.FILE);
    const again = createHash('sha256');
    await pipeline(await lv.volumes.download(vol, { offset: 0, length: MiB }), hashSink(again));
  });
});
