import { once } from 'node:events';
import type { Duplex, Readable, Writable } from 'node:stream';

export interface ThroughputResult {
  readonly bytes: number;
  readonly seconds: number;
  readonly mbPerSecond: number;
}

/**
 * Writes `bytes` into `writer` (respecting backpressure) and resolves once
 * `reader` has delivered as many: with the two ends of one vchan that is its
 * one-way throughput, with an echoing peer behind one vchan the round trip's.
 */
export async function measureThroughput(
  writer: Writable,
  reader: Readable,
  bytes: number,
): Promise<ThroughputResult> {
  const chunk = Buffer.alloc(Math.min(bytes, 64 * 1024), 0xa5);
  const begin = performance.now();
  const received = new Promise<void>((resolve, reject) => {
    let seen = 0;
    const onData = (data: Buffer): void => {
      seen += data.length;
      if (seen < bytes) return;
      reader.off('data', onData);
      reader.off('error', reject);
      reader.off('end', onEnd);
      resolve();
    };
    const onEnd = (): void => reject(new Error(`stream ended after ${seen} of ${bytes} bytes`));
    reader.on('data', onData);
    reader.once('error', reject);
    reader.once('end', onEnd);
    // A stream paused by an earlier measurement stays paused when a 'data' listener is added.
    reader.resume();
  });
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    const piece = bytes - sent < chunk.length ? chunk.subarray(0, bytes - sent) : chunk;
    if (!writer.write(piece)) await Promise.race([once(writer, 'drain'), received]);
  }
  await received;
  reader.pause();
  const seconds = (performance.now() - begin) / 1000;
  return { bytes, seconds, mbPerSecond: Math.round((bytes / (1 << 20) / seconds) * 10) / 10 };
}

/** Median time in microseconds for `size` bytes to go to an echoing peer and back. */
export async function measureRoundTrip(vchan: Duplex, rounds: number, size = 64): Promise<number> {
  const message = Buffer.alloc(size, 0x5a);
  const times: number[] = [];
  let seen = 0;
  let arrived = (): void => undefined;
  const onData = (data: Buffer): void => {
    seen += data.length;
    if (seen >= size) arrived();
  };
  const gone = new Promise<never>((_, reject) =>
    vchan.once('close', () =>
      reject(new Error(`vchan closed after ${times.length} of ${rounds} round trips`)),
    ),
  );
  gone.catch(() => undefined);
  vchan.on('data', onData);
  vchan.resume();
  try {
    for (let i = 0; i < rounds; i++) {
      const back = new Promise<void>((resolve) => (arrived = resolve));
      seen = 0;
      const begin = performance.now();
      vchan.write(message);
      await Promise.race([back, gone]);
      times.push((performance.now() - begin) * 1000);
    }
  } finally {
    vchan.off('data', onData);
    vchan.pause();
  }
  times.sort((a, b) => a - b);
  return Math.round(times[Math.floor(times.length / 2)] ?? 0);
}
