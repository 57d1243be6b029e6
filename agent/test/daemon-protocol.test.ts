import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MessageReader,
  MsgType,
  QrexecDaemon,
  decodeExecParams,
  decodePeerInfo,
  encodeExecParams,
  encodePeerInfo,
  encodeTrigger3,
  encodeTrigger4,
  readCString,
  writeMessage,
  type QrexecPolicyRequest,
} from '@odyssey/qrexec';
import type { Vchan } from '@odyssey/hal';
import { SocketVchanTransport } from '@odyssey/vchan';

/*
 * The daemon against a hand-driven agent on a real socket vchan: what it
 * accepts, refuses and drops, byte by byte.
 */

let dir: string;
let daemon: QrexecDaemon;
let agentEnd: Vchan;
let agentReader: MessageReader;
let requests: QrexecPolicyRequest[];
let agentTransport: SocketVchanTransport;

async function connect(agentVersion: number): Promise<number> {
  agentTransport = new SocketVchanTransport({ localDomain: '11', dir });
  daemon = new QrexecDaemon({
    domain: { name: 'raw', id: 11 },
    transport: new SocketVchanTransport({ localDomain: '0', dir }),
    policy: async (request) => {
      requests.push(request);
      return { result: 'deny' };
    },
    serviceDirs: [],
  });
  const listening = agentTransport.listen('0', 512);
  const starting = daemon.start();
  agentEnd = await listening;
  agentReader = new MessageReader(agentEnd);
  await writeMessage(agentEnd, MsgType.HELLO, encodePeerInfo(agentVersion));
  const hello = await agentReader.expect();
  await starting;
  return decodePeerInfo(hello.payload);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'qrexec-raw-'));
  requests = [];
});

afterEach(async () => {
  await daemon.close();
  agentEnd.destroy();
  await rm(dir, { recursive: true, force: true });
});

describe('QrexecDaemon on the control vchan', () => {
  it('answers HELLO and settles on the lower version', async () => {
    expect(await connect(3)).toBe(4);
    expect(daemon.protocolVersion).toBe(3);
  });

  it('asks the policy and refuses with the request id when it denies', async () => {
    await connect(4);
    await writeMessage(
      agentEnd,
      MsgType.TRIGGER_SERVICE4,
      encodeTrigger4('', 'work', 'SOCKET42', 'qubes.Gpg'),
    );
    const refused = await agentReader.expect();
    expect(refused.type).toBe(MsgType.SERVICE_REFUSED);
    expect(refused.payload).toHaveLength(32);
    expect(readCString(refused.payload)).toBe('SOCKET42');
    expect(requests).toEqual([{ source: 'raw', target: 'work', serviceAndArg: 'qubes.Gpg' }]);
  });

  it('serves MSG_TRIGGER_SERVICE3 under protocol 3', async () => {
    await connect(3);
    await writeMessage(agentEnd, MsgType.TRIGGER_SERVICE3, encodeTrigger3('@default', 'SOCKET1', 'a.B+c'));
    expect((await agentReader.expect()).type).toBe(MsgType.SERVICE_REFUSED);
    expect(requests[0]).toMatchObject({ target: '@default', serviceAndArg: 'a.B+c' });
  });

  it('refuses a malformed request without asking the policy', async () => {
    await connect(4);
    await writeMessage(
      agentEnd,
      MsgType.TRIGGER_SERVICE4,
      encodeTrigger4('', 'work', 'SOCKET9', '+noservice'),
    );
    const refused = await agentReader.expect();
    expect(refused.type).toBe(MsgType.SERVICE_REFUSED);
    expect(readCString(refused.payload)).toBe('SOCKET9');
    expect(requests).toEqual([]);
  });

  it('drops the agent that sends a trigger its protocol does not have', async () => {
    await connect(3);
    await writeMessage(agentEnd, MsgType.TRIGGER_SERVICE4, encodeTrigger4('', 'work', 'SOCKET1', 'a.B'));
    await daemon.closed;
    expect(await agentReader.next()).toBeNull();
  });

  it('drops the agent that sends an unknown message', async () => {
    await connect(4);
    await writeMessage(
      agentEnd,
      MsgType.EXEC_CMDLINE,
      encodeExecParams({ connectDomain: 0, connectPort: 0 }, 'x'),
    );
    await daemon.closed;
    expect(await agentReader.next()).toBeNull();
  });

  it('asks the agent to run dom0 calls with the default user replaced', async () => {
    await connect(4);
    const calling = daemon.callService('qubes.VMShell', { stdin: Buffer.from('') });
    const exec = await agentReader.expect();
    expect(exec.type).toBe(MsgType.EXEC_CMDLINE);
    const params = decodeExecParams(exec.payload);
    expect(params).toMatchObject({ connectDomain: 0, connectPort: 513 });
    expect(params.tail.toString()).toBe('DEFAULT:QUBESRPC qubes.VMShell+ dom0\0');
    agentEnd.destroy();
    await expect(calling).rejects.toThrow();
  });

  it("ends a call's data vchan when the domain is let go, even if its transport saw no dead peer", async () => {
    await connect(4);
    const calling = daemon.callService('test.Hang');
    const exec = decodeExecParams((await agentReader.expect()).payload);
    // The agent's end stays open and silent, as a crashed Xen domain's vchan does.
    const data = await agentTransport.connect('0', exec.connectPort);
    await daemon.close();
    await expect(calling).rejects.toThrow();
    data.destroy();
  });
});
