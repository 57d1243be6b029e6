import type { Vchan, VchanTransport } from '@odyssey/hal';

import { expectEqual, fail } from './check.js';
import { CONTROL_PORT, execCmdline, hello, MessageReader, MSG } from './qrexec-wire.js';

/** How long a guest's agent may take to listen after start() (a TCG guest boots in tens of seconds). */
const AGENT_TIMEOUT_MS = 150_000;

/** One vchan to a guest's agent and the qrexec messages arriving on it. */
export interface AgentVchan {
  readonly vchan: Vchan;
  readonly reader: MessageReader;
}

/**
 * dom0's control vchan to the agent of the running domain `xid` (dom0 → guest: the agent listens,
 * dom0 connects), after the HELLO exchange, in which the agent speaks first.
 */
export async function connectAgent(transport: VchanTransport, xid: number): Promise<AgentVchan> {
  const vchan = await transport.connect(String(xid), CONTROL_PORT, { timeoutMs: AGENT_TIMEOUT_MS });
  const reader = new MessageReader(vchan);
  const first = await reader.next();
  expectEqual(first.type, MSG.HELLO, `first message of the agent on vchan ${xid}:${CONTROL_PORT}`);
  if (first.payload.length !== 4 || first.payload.readUInt32LE(0) < 2)
    fail(`the agent's HELLO carries no protocol version >= 2: ${first.payload.toString('hex')}`);
  vchan.write(hello());
  return { vchan, reader };
}

/**
 * Asks the agent on `control` to run `user:command` and accepts its connection back to dom0's
 * `port` (guest → dom0: dom0 listens, the agent connects), after that vchan's HELLO exchange.
 */
export async function agentExec(
  transport: VchanTransport,
  xid: number,
  control: Vchan,
  port: number,
  command: string,
): Promise<AgentVchan> {
  const listening = transport.listen(String(xid), port);
  control.write(execCmdline(port, `user:${command}`));
  const vchan = await listening;
  const reader = new MessageReader(vchan);
  await reader.expect(MSG.HELLO, `the agent's HELLO on data vchan ${xid}:${port}`);
  vchan.write(hello());
  return { vchan, reader };
}

/** Reads an exec's STDOUT until its EOF, then its exit code. */
export async function drainExec(reader: MessageReader): Promise<{ stdout: Buffer; code: number }> {
  const parts: Buffer[] = [];
  for (;;) {
    const m = await reader.next();
    if (m.type === MSG.DATA_STDOUT && m.payload.length > 0) parts.push(m.payload);
    if (m.type === MSG.DATA_EXIT_CODE)
      return { stdout: Buffer.concat(parts), code: m.payload.readInt32LE(0) };
  }
}

/**
 * Runs `command` in the running domain `xid` through its agent, for a command that may end the
 * agent itself: resolves on the command's exit code, or when the vchan ends before it.
 */
export async function agentRunUntilGone(
  transport: VchanTransport,
  xid: number,
  port: number,
  command: string,
): Promise<void> {
  const control = await connectAgent(transport, xid);
  try {
    const data = await agentExec(transport, xid, control.vchan, port, command);
    // A vchan ending first is the agent gone, which is what the command was for.
    await data.reader.expect(MSG.DATA_EXIT_CODE, `exit code of ${command}`).catch(() => undefined);
    data.vchan.destroy();
  } finally {
    control.vchan.destroy();
  }
}
