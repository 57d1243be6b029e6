import { randomBytes } from 'node:crypto';

import type { VchanTransport } from '@odyssey/hal';

import { expectEqual, fail, Unsupported, type Check } from '../check.js';
import { agentExec, connectAgent, drainExec, type AgentVchan } from '../hal-agent.js';
import { MAX_CHUNK, MSG, encode, writeAll } from '../qrexec-wire.js';
import { HAL_DOMAIN, type HalContext } from './hal-context.js';

// Well past any ring (and socket buffer) size, small enough for a nested TCG guest.
const PAYLOAD = 2 << 20;

/** dom0's control vchan to the agent of HAL_DOMAIN, kept by the first check for the others. */
let control: (AgentVchan & { xid: number }) | undefined;
/** Data ports dom0 hands out, one per exec. */
let nextPort = 600;

async function transportOf(ctx: HalContext): Promise<{ transport: VchanTransport; xid: number }> {
  const transport = ctx.backend.current.vchan;
  if (!transport) throw new Unsupported('declared', 'createBackend returned no VchanTransport');
  if (ctx.guest.kind instanceof Unsupported) throw ctx.guest.kind;
  const rt = await ctx.backend.current.vmm.state(HAL_DOMAIN);
  if (rt.state !== 'Running') fail(`${HAL_DOMAIN} is not running (state() says ${rt.state}, xid ${rt.xid})`);
  return { transport, xid: rt.xid };
}

/** The control vchan, connecting and exchanging HELLO first if no earlier check did. */
async function controlOf(ctx: HalContext): Promise<NonNullable<typeof control>> {
  const { transport, xid } = await transportOf(ctx);
  if (control?.xid === xid) return control;
  control = { ...(await connectAgent(transport, xid)), xid };
  return control;
}

/** Asks the agent to run `command` and accepts its connection back to dom0: the guest → dom0 direction. */
async function exec(ctx: HalContext, command: string): Promise<AgentVchan> {
  const { vchan, xid } = await controlOf(ctx);
  const { transport } = await transportOf(ctx);
  return agentExec(transport, xid, vchan, nextPort++, command);
}

const vchanCheck = (id: string, run: (ctx: HalContext) => Promise<void>): Check<HalContext> => ({
  id: `hal.vchan-${id}`,
  category: 'hal',
  run,
});

export const halVchanChecks: readonly Check<HalContext>[] = [
  // dom0 → guest: dom0 connects to the agent's listening port, and the agent speaks first.
  vchanCheck('connect-to-guest', async (ctx) => {
    await controlOf(ctx);
  }),
  // guest → dom0, both ways over it: ordering, backpressure (dom0 writes faster than cat echoes, so
  // write() must report a full ring and nothing may be lost), and EOF (an empty STDIN ends `cat`,
  // which ends STDOUT and exits 0).
  vchanCheck('ordered-backpressure-eof', async (ctx) => {
    const { vchan, reader } = await exec(ctx, 'cat');
    const data = randomBytes(PAYLOAD);
    let full = false;
    let offset = 0;
    const writing = (async () => {
      while (offset < data.length) {
        const chunk = data.subarray(offset, offset + MAX_CHUNK);
        offset += chunk.length;
        if (await writeAll(vchan, encode(MSG.DATA_STDIN, chunk))) full = true;
      }
      await writeAll(vchan, encode(MSG.DATA_STDIN));
    })();
    const out = await drainExec(reader);
    await writing;
    if (!full) fail(`write() never reported a full ring while ${PAYLOAD} bytes went through`);
    expectEqual(out.code, 0, 'exit code of cat after STDIN EOF');
    expectEqual(out.stdout.length, data.length, 'bytes back from cat');
    if (!out.stdout.equals(data)) fail('bytes back from cat differ from the bytes sent (order or content)');
  }),
  // dom0 drops a data vchan while the guest still writes into it: the guest's agent and the
  // transport must survive, so the next exec works.
  vchanCheck('close-while-peer-writes', async (ctx) => {
    const { vchan, reader } = await exec(ctx, 'cat /dev/zero');
    while (reader.received < 1 << 20) await reader.next();
    vchan.destroy();
    const again = await exec(ctx, 'echo still-here');
    expectEqual(
      (await drainExec(again.reader)).stdout.toString(),
      'still-here\n',
      'exec after the dropped vchan',
    );
    const rt = await ctx.backend.current.vmm.state(HAL_DOMAIN);
    expectEqual(rt.state, 'Running', `state() of ${HAL_DOMAIN} after the dropped vchan`);
  }),
];

/** Closes the control vchan, before the domain it leads to stops. */
export function closeHalVchans(): void {
  control?.vchan.destroy();
  control = undefined;
}

/**
 * Whether the running HAL_DOMAIN's agent answers on a fresh control vchan (a HELLO), through the
 * current instance; false when there is nothing inside to answer (no guest kind, no transport).
 */
export async function halAgentAnswers(ctx: HalContext): Promise<boolean> {
  if (!ctx.backend.current.vchan || ctx.guest.kind instanceof Unsupported) return false;
  closeHalVchans();
  await controlOf(ctx);
  return true;
}
