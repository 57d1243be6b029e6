import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';

import { SocketVchanTransport, measureRoundTrip, measureThroughput, type SocketVchan } from '../src/index.js';

let dir: string;
const open: SocketVchan[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vchan-measure-'));
});

afterEach(async () => {
  for (const vchan of open.splice(0)) vchan.destroy();
  await rm(dir, { recursive: true, force: true });
});

it('measures round trips and then throughput on one vchan to an echoing peer', async () => {
  const guest = new SocketVchanTransport({ localDomain: '4', dir });
  const dom0 = new SocketVchanTransport({ localDomain: '0', dir });
  const [echo, vchan] = await Promise.all([guest.listen('0', 700), dom0.connect('4', 700)]);
  open.push(echo, vchan);
  echo.pipe(echo);

  const roundTripUs = await measureRoundTrip(vchan, 20);
  // The round trips leave the stream paused; the throughput run must still see every byte come back.
  const result = await measureThroughput(vchan, vchan, 4 << 20);
  expect(roundTripUs).toBeGreaterThan(0);
  expect(result.bytes).toBe(4 << 20);
  expect(result.mbPerSecond).toBeGreaterThan(0);
}, 20_000);
