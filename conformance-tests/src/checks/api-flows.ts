import { parseVmList } from '@odyssey/client';

import { expectEqual, fail, type Check, type CheckContext } from '../check.js';

const api = (id: string, run: (ctx: CheckContext) => Promise<void>): Check => ({
  id: `api.${id}`,
  category: 'api',
  run,
});

/** Calls that span several requests, or whose bytes depend on the host (pool names, tokens, events). */
export const apiFlowChecks: readonly Check[] = [
  api('pools-info', async ({ client }) => {
    const pools = await client.pools.list();
    if (pools.length === 0) fail('admin.pool.List returned no pool');
    for (const pool of pools) {
      const info = await client.pools.info(pool);
      expectEqual(info['name'], pool, `admin.pool.Info+${pool} name`);
      if (!info['driver']) fail(`admin.pool.Info+${pool} has no driver`);
    }
  }),
  api('create-in-pool', async ({ client }) => {
    const pool =
      (await client.call('admin.property.Get', 'dom0', 'default_pool')).toString().split(' ').pop() ?? '';
    await client.call(
      'admin.vm.CreateInPool.AppVM',
      'dom0',
      'conf-api-tpl',
      `name=x5 label=red pool:private=${pool}`,
    );
    expectEqual((await client.volumes.info('x5', 'private'))['pool'], pool, 'x5 private pool');
  }),
  api('clone-from-to', async ({ client }) => {
    const token = (await client.call('admin.vm.volume.CloneFrom', 'work', 'private')).toString();
    if (!/^[A-Za-z0-9_-]{16,}$/.test(token)) fail(`CloneFrom token looks wrong: ${JSON.stringify(token)}`);
    await client.call('admin.vm.volume.CloneTo', 'x5', 'private', token);
  }),
  api('volume-import', async ({ client }) => {
    const data = Buffer.alloc(1 << 20, 0x5a);
    await client.volumes.importDataWithSize('x5', 'private', data);
    expectEqual(
      (await client.volumes.info('x5', 'private'))['size'],
      String(data.length),
      'size after ImportWithSize',
    );
  }),
  api('events-property-set', async ({ client }) => {
    const abort = new AbortController();
    const stream = client.events('dom0', abort.signal);
    // The first message is connection-established: from then on the subscription is live.
    const first = await stream.next();
    expectEqual(first.value && first.value.event, 'connection-established', 'first event');
    await client.vmProperties('x5').set('label', 'green');
    try {
      for await (const ev of stream) {
        if (ev.subject === 'x5' && ev.event === 'property-set:label') {
          expectEqual(ev.kwargs['newvalue'], 'green', 'property-set:label newvalue');
          return;
        }
      }
      fail('event stream ended before property-set:label');
    } finally {
      abort.abort();
    }
  }),
  api('remove-vm', async ({ client }) => {
    await client.call('admin.vm.Remove', 'x5');
    const names = parseVmList(await client.call('admin.vm.List', 'dom0')).map((vm) => vm.name);
    if (names.includes('x5')) fail('x5 still listed after admin.vm.Remove');
  }),
];
