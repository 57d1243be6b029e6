import { createConnection, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import {
  EXEC_PARAMS_SIZE,
  MsgType,
  QREXEC_EXIT_REQUEST_REFUSED,
  callOverDataChannel,
  decodeExecParams,
  encodeMessage,
  encodeTrigger4,
} from '@odyssey/qrexec';
import type { VchanTransport } from '@odyssey/hal';

export interface ClientVmOptions {
  readonly transport: VchanTransport;
  /** The agent's trigger socket. */
  readonly triggerPath: string;
  /** Target qube or keyword; `$` stands for `@`, as upstream accepts. */
  readonly target: string;
  readonly serviceAndArg: string;
  /** The source to ask for (qrexec-client-vm -s); the agent's own domain when absent. */
  readonly source?: string;
  readonly stdin: Readable | null;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** The request id qrexec-client-vm sends; the agent replaces it with its own. */
const CLIENT_REQUEST_ID = 'SOCKET';

/**
 * qrexec-client-vm: asks the local agent for a call and, once dom0 allowed
 * it, becomes the vchan server of the data channel. Resolves with the exit
 * code to exit with (126 when the request was refused).
 */
export async function runClientVm(options: ClientVmOptions): Promise<number> {
  const agent = await connectAgent(options.triggerPath);
  try {
    const request = encodeTrigger4(
      options.source ?? '',
      options.target.replaceAll('$', '@'),
      CLIENT_REQUEST_ID,
      options.serviceAndArg,
    );
    agent.write(encodeMessage(MsgType.TRIGGER_SERVICE4, request));
    const answer = await readAnswer(agent);
    if (!answer) {
      options.stderr.write('Request refused\n');
      return QREXEC_EXIT_REQUEST_REFUSED;
    }
    const { connectDomain, connectPort } = decodeExecParams(answer);
    const channel = await options.transport.listen(String(connectDomain), connectPort);
    channel.on('error', () => undefined);
    try {
      return await callOverDataChannel(channel, options);
    } finally {
      channel.end();
    }
  } finally {
    agent.end();
  }
}

function connectAgent(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

/** The agent's exec_params, or undefined when it closed the socket instead (refusal). */
function readAnswer(agent: Socket): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= EXEC_PARAMS_SIZE) finish(buffered.subarray(0, EXEC_PARAMS_SIZE));
    };
    const finish = (answer: Buffer | undefined): void => {
      agent.off('data', onData);
      agent.off('end', onEnd);
      agent.off('close', onEnd);
      resolve(answer);
    };
    const onEnd = (): void => finish(undefined);
    agent.on('data', onData);
    agent.on('end', onEnd);
    agent.on('close', onEnd);
  });
}
