/**
 * What the nested Xen run shows dom0 of the template builder's cache: the guest category needs it
 * whenever it runs, the whole suite included (CI runs it so); a run without that category does not.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { templateCacheShare } from '../src/nested.js';

let cache: string;
const saved = process.env['ODYSSEY_TEMPLATE_CACHE'];

describe('the template cache share of a nested run', () => {
  beforeAll(async () => {
    cache = await mkdtemp(join(tmpdir(), 'odyssey-template-cache-'));
    process.env['ODYSSEY_TEMPLATE_CACHE'] = cache;
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env['ODYSSEY_TEMPLATE_CACHE'];
    else process.env['ODYSSEY_TEMPLATE_CACHE'] = saved;
    await rm(cache, { recursive: true, force: true });
  });

  it('is shared for the whole suite and for a selection naming the guest or network category', async () => {
    const share = ['--share', cache, '--env', `ODYSSEY_TEMPLATE_CACHE=${cache}`];
    expect(await templateCacheShare(undefined)).toEqual(share);
    expect(await templateCacheShare('lifecycle,guest')).toEqual(share);
    expect(await templateCacheShare('network')).toEqual(share);
  });

  it('is not shared for a selection without it, nor when the cache does not exist', async () => {
    expect(await templateCacheShare('lifecycle,isolation')).toEqual([]);
    process.env['ODYSSEY_TEMPLATE_CACHE'] = join(cache, 'missing');
    expect(await templateCacheShare(undefined)).toEqual([]);
    process.env['ODYSSEY_TEMPLATE_CACHE'] = cache;
  });
});
