import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { expectEqual, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import type { Finished } from '../spawn.js';
import { guestsOf } from './guest.js';

/**
 * QubesDB as a domain's programs see it: odysseyd's database for the domain,
 * read inside the guest with upstream's commands, and a service feature
 * change arriving live. Self-contained: the guest service it needs is
 * written here.
 */

/** qubesdb-cmd as built in this checkout: a process domain shares the host's files, so it can run it. */
const HOST_QUBESDB_CMD = join(
  dirname(fileURLToPath(import.meta.resolve('@odyssey/agent'))),
  'qubesdb-cmd-main.js',
);
const SERVICE = 'test.Qubesdb';
const FEATURE = 'service.conformance-qubesdb';
const KEY = '/qubes-service/conformance-qubesdb';

/**
 * Runs `qubesdb-CMD KEY` (from stdin's one line) in the guest: the guest's own command when its
 * image has one, else this checkout's, which exists only in a domain sharing the host's files.
 */
function serviceScript(): string {
  return [
    '#!/bin/sh',
    'read -r cmd key',
    'if command -v "qubesdb-$cmd" >/dev/null 2>&1; then exec "qubesdb-$cmd" "$key"; fi',
    `if [ -f "${HOST_QUBESDB_CMD}" ]; then exec "${process.execPath}" "${HOST_QUBESDB_CMD}" -c "$cmd" "$key"; fi`,
    'echo "this guest has no qubesdb-$cmd" >&2',
    'exit 127',
    '',
  ].join('\n');
}

/** Every guest image the suite boots has the commands: a guest without them fails, with its stderr. */
const qubesdb = (ctx: CheckContext, command: string, key: string): Promise<Finished> =>
  guestsOf(ctx).dom0Call(QUBES.peer, SERVICE, `${command} ${key}\n`);

const setFeature = (ctx: CheckContext, value: string): Promise<Buffer> =>
  ctx.client.call('admin.vm.feature.Set', QUBES.peer, FEATURE, value);

export const qubesdbChecks: readonly Check[] = [
  {
    id: 'vchan.qubesdb-keys',
    category: 'vchan',
    run: async (ctx) => {
      await guestsOf(ctx).installService(QUBES.peer, SERVICE, serviceScript());
      expectEqual(
        await qubesdb(ctx, 'read', '/name'),
        { code: 0, stdout: `${QUBES.peer}\n`, stderr: '' },
        'qubesdb-read /name',
      );
      expectEqual(
        await qubesdb(ctx, 'read', '/qubes-vm-persistence'),
        { code: 0, stdout: 'rw-only\n', stderr: '' },
        'qubesdb-read /qubes-vm-persistence of an AppVM',
      );
      expectEqual(
        (await qubesdb(ctx, 'read', '/no-such-key')).code,
        2,
        'exit code of qubesdb-read of a missing key',
      );
    },
  },
  {
    id: 'vchan.qubesdb-service-live',
    category: 'vchan',
    run: async (ctx) => {
      await guestsOf(ctx).installService(QUBES.peer, SERVICE, serviceScript());
      const watch = qubesdb(ctx, 'watch', KEY);
      let fired = false;
      void watch.then(
        () => (fired = true),
        () => (fired = true),
      );
      // The guest's watch may not be set when a feature is set: set it again until the watch fired.
      while (!fired) {
        await setFeature(ctx, '1');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expectEqual(await watch, { code: 0, stdout: `${KEY}\n`, stderr: '' }, `qubesdb-watch ${KEY}`);
      expectEqual(
        await qubesdb(ctx, 'read', KEY),
        { code: 0, stdout: '1\n', stderr: '' },
        `qubesdb-read ${KEY}`,
      );
      await ctx.client.call('admin.vm.feature.Remove', QUBES.peer, FEATURE);
      // The removal reaches the guest asynchronously: read until it is gone (the check's timeout bounds it).
      while ((await qubesdb(ctx, 'read', KEY)).code !== 2)
        await new Promise((resolve) => setTimeout(resolve, 100));
    },
  },
];
