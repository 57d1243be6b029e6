import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { XenVchanTransport, loadLibxenvchan } from '../src/index.js';

const nativeLoaded = (name: string): boolean => readFileSync('/proc/self/maps', 'utf8').includes(name);

it('loads koffi and libxenvchan only when the Xen transport is used', async () => {
  new XenVchanTransport();
  expect(nativeLoaded('koffi.node')).toBe(false);
  expect(nativeLoaded('libxenvchan')).toBe(false);
  await loadLibxenvchan();
  expect(nativeLoaded('koffi.node')).toBe(true);
  expect(nativeLoaded('libxenvchan.so.4.17')).toBe(true);
});
