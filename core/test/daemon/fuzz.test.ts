import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { rawCall, request } from '../support/harness.js';
import type { SpawnedDaemon } from '../support/spawn.js';
import { cleanUp, spawnDaemon } from '../support/spawn.js';
import { persistedXml } from '../support/persisted.js';

/** mulberry32: a small seeded PRNG, so that a failing frame can be reproduced from the printed seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Seeds are reads whose one-byte mutation into a Set is refused (empty or
 * mangled payloads do not parse) and a write whose payload no small edit makes
 * valid, so that qubes.xml must come out byte-identical; valid writes are the
 * other tests' business. The PRNG seed is fixed: the frames are the same on
 * every run.
 */
const SEEDS: Buffer[] = [
  request('admin.vm.List', 'dom0'),
  request('admin.vm.List', 'work'),
  request('admin.vmclass.List', 'dom0'),
  request('admin.label.List', 'dom0'),
  request('admin.label.Get', 'dom0', 'red'),
  request('admin.label.Index', 'dom0', 'blue'),
  request('admin.property.List', 'dom0'),
  request('admin.property.Get', 'dom0', 'stats_interval'),
  request('admin.property.GetAll', 'dom0'),
  request('admin.vm.property.Get', 'work', 'memory'),
  request('admin.vm.property.Get', 'work', 'qid'),
  request('admin.vm.property.GetAll', 'work'),
  request('admin.vm.property.List', 'work'),
  request('admin.vm.property.Help', 'work', 'vcpus'),
  request('admin.vm.CurrentState', 'work'),
  request('admin.vm.firewall.Get', 'work'),
  request('admin.vm.feature.List', 'work'),
  request('admin.vm.tag.List', 'work'),
  request('admin.vm.firewall.Set', 'work', '', 'action=maybe\n'),
];

function mutate(seed: Buffer, rnd: () => number): Buffer {
  const int = (n: number) => Math.floor(rnd() * n);
  const b = Buffer.from(seed);
  switch (int(9)) {
    case 0: // flip one byte
      if (b.length) b[int(b.length)] = int(256);
      return b;
    case 1: // truncate
      return b.subarray(0, int(b.length + 1));
    case 2: {
      // delete a range
      const i = int(b.length + 1);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + int(8) + 1)]);
    }
    case 3: {
      // insert random bytes
      const i = int(b.length + 1);
      const ins = Buffer.from(Array.from({ length: int(16) + 1 }, () => int(256)));
      return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)]);
    }
    case 4: {
      // insert a framing character
      const i = int(b.length + 1);
      const ch = Buffer.from([[0, 0x20, 0x2b, 0x0a][int(4)] ?? 0]);
      return Buffer.concat([b.subarray(0, i), ch, b.subarray(i)]);
    }
    case 5: // pure noise
      return Buffer.from(Array.from({ length: int(200) }, () => int(256)));
    case 6: // header repeated
      return Buffer.concat([b, b]);
    case 7: // big payload of junk after a valid header
      return Buffer.concat([b, Buffer.alloc(int(4096), int(256))]);
    default: // swap the method for another seed's
      return Buffer.concat([SEEDS[int(SEEDS.length)]?.subarray(0, int(40)) ?? b, b.subarray(int(b.length))]);
  }
}

let d: SpawnedDaemon;
beforeAll(async () => {
  d = await spawnDaemon();
  const ok = async (...a: Parameters<typeof request>) => {
    const r = await rawCall(d.socket, request(...a));
    if (r[0] !== 0x30) throw new Error(`setup ${a[0]} failed: ${r.toString('latin1')}`);
  };
  await ok('admin.vm.Create.TemplateVM', 'dom0', '', 'name=tpl label=black');
  await ok('admin.vm.Create.AppVM', 'dom0', 'tpl', 'name=work label=red');
  await ok('admin.vm.feature.Set', 'work', 'x', 'y');
  await ok('admin.vm.firewall.Set', 'work', '', 'action=drop proto=tcp dstports=22\naction=accept\n');
});
afterAll(() => cleanUp([d]));

describe('fuzzing the admin socket', () => {
  it('survives 10,000 random and mutated frames and changes nothing', async () => {
    const before = await persistedXml(d.stateDir);
    const seed = Number(process.env.ODYSSEY_FUZZ_SEED ?? 20261124);
    const rnd = prng(seed);
    const frames = Array.from({ length: 10_000 }, (_, i) =>
      i % 1000 === 999
        ? Buffer.alloc(70_000, 0x41)
        : mutate(SEEDS[Math.floor(rnd() * SEEDS.length)] as Buffer, rnd),
    );
    const kinds = { ok: 0, exception: 0, empty: 0 };
    let next = 0;
    const worker = async () => {
      while (next < frames.length) {
        const frame = frames[next++] as Buffer;
        const r = await rawCall(d.socket, frame).catch(() => Buffer.alloc(0));
        if (r.length === 0) kinds.empty++;
        else if (r[0] === 0x30) kinds.ok++;
        else if (r[0] === 0x32) kinds.exception++;
        else throw new Error(`reply of unknown type to ${JSON.stringify(frame.toString('latin1'))}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    console.log(`fuzz seed ${seed}: ${JSON.stringify(kinds)}`);
    expect(d.proc.exitCode).toBeNull();
    expect(kinds.ok + kinds.exception + kinds.empty).toBe(10_000);
    expect(kinds.exception).toBeGreaterThan(1000);
    expect(await persistedXml(d.stateDir)).toBe(before);
    const r = await rawCall(d.socket, request('admin.vm.property.Get', 'work', 'label'));
    expect(r.toString('latin1')).toBe('0\0default=False type=label red');
  }, 120_000);
});
