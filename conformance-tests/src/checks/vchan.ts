import { expectEqual, type Check, type CheckContext } from '../check.js';
import { QUBES } from '../qubes.js';
import { SINK_SERVICE } from '../services.js';
import { guestsOf } from './guest.js';

const MB = 1 << 20;
const PAYLOAD_MB = 32;

/**
 * Sends PAYLOAD_MB from conf-mgmt through qrexec-client-vm to the test.Sink service of `target` and
 * returns MB/s: the data crosses the caller's agent and the vchans to the target (process spawns included,
 * as every qrexec call pays them).
 */
async function sinkThroughput(ctx: CheckContext, target: string): Promise<number> {
  const bytes = PAYLOAD_MB * MB;
  const begin = performance.now();
  const reply = await guestsOf(ctx).qrexecClientVm(QUBES.mgmt, target, 'test.Sink', { zeroBytes: bytes });
  const seconds = (performance.now() - begin) / 1000;
  expectEqual(
    { code: reply.code, stdout: reply.stdout.trim() },
    { code: 0, stdout: String(bytes) },
    `test.Sink in ${target}`,
  );
  return Math.round((PAYLOAD_MB / seconds) * 10) / 10;
}

const DOM0_PAYLOAD_MB = 16;
/**
 * dom0 → guest calls at once. Each has a data vchan dom0 serves; on Xen one of them gets the 1 MiB
 * bulk rings (513 of gntalloc's 1024 pages by default) and the others qrexec's 64 KiB (33 each).
 */
const CONCURRENT_CALLS = 4;

export const vchanChecks: readonly Check[] = [
  {
    // dom0 → guest through odyssey-qrexec-client: the local socket, odysseyd and the data vchan.
    id: 'vchan.dom0-to-vm-throughput',
    category: 'vchan',
    run: async (ctx) => {
      const guests = guestsOf(ctx);
      await guests.installService(QUBES.peer, 'test.Sink', SINK_SERVICE);
      const data = Buffer.alloc(DOM0_PAYLOAD_MB * MB, 0x5a);
      const begin = performance.now();
      const reply = await guests.dom0Call(QUBES.peer, 'test.Sink', data);
      const seconds = (performance.now() - begin) / 1000;
      expectEqual(
        { code: reply.code, stdout: reply.stdout.trim() },
        { code: 0, stdout: String(data.length) },
        `test.Sink in ${QUBES.peer} called from dom0`,
      );
      ctx.metrics['vchan_dom0_to_vm_mb_per_s'] = Math.round((DOM0_PAYLOAD_MB / seconds) * 10) / 10;
    },
  },
  {
    id: 'vchan.concurrent-calls',
    category: 'vchan',
    run: async (ctx) => {
      const guests = guestsOf(ctx);
      await guests.installService(QUBES.peer, 'test.Sink', SINK_SERVICE);
      const sizes = Array.from({ length: CONCURRENT_CALLS }, (_, i) => (i + 1) * 256 * 1024);
      const replies = await Promise.all(
        sizes.map((size) => guests.dom0Call(QUBES.peer, 'test.Sink', Buffer.alloc(size, 0x33))),
      );
      expectEqual(
        replies.map((reply) => ({ code: reply.code, stdout: reply.stdout.trim() })),
        sizes.map((size) => ({ code: 0, stdout: String(size) })),
        `${CONCURRENT_CALLS} calls of test.Sink in ${QUBES.peer} from dom0 at once`,
      );
    },
  },
  {
    id: 'vchan.vm-to-vm-throughput',
    category: 'vchan',
    needs: ['vmToVmVchan'],
    run: async (ctx) => {
      await guestsOf(ctx).installService(QUBES.peer, 'test.Sink', SINK_SERVICE);
      ctx.metrics['vchan_mb_per_s'] = await sinkThroughput(ctx, QUBES.peer);
    },
  },
  {
    // dom0's test.Sink is installed with odysseyd (its --qrexec-services directory).
    id: 'vchan.vm-to-admin-throughput',
    category: 'vchan',
    run: async (ctx) => {
      ctx.metrics['vchan_vm_to_admin_mb_per_s'] = await sinkThroughput(ctx, 'dom0');
    },
  },
];
