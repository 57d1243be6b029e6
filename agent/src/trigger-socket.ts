import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createServer, type Server, type Socket } from 'node:net';
import {
  MAX_SERVICE_NAME_LEN,
  MSG_HEADER_SIZE,
  MsgType,
  TRIGGER_SERVICE_PARAMS4_SIZE,
  decodeHeader,
  encodeServiceParams,
} from '@odyssey/qrexec';

/** A qrexec-client-vm request, its request id already replaced by the agent's own. */
export interface TriggerFromClient {
  readonly ident: string;
  readonly payload: Buffer;
  readonly client: Socket;
}

const REQUEST_ID_OFFSET = 128;

/**
 * The agent's AF_UNIX socket for qrexec-client-vm. Each connection carries
 * one MSG_TRIGGER_SERVICE4; the connection stays open until dom0 answers.
 */
export async function listenForTriggers(
  path: string,
  onTrigger: (trigger: TriggerFromClient) => void,
): Promise<Server> {
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true });
  let counter = 0;
  const server = createServer((client) => {
    client.on('error', () => client.destroy());
    readRequest(client)
      .then((payload) => {
        const ident = `SOCKET${++counter}`;
        encodeServiceParams(ident).copy(payload, REQUEST_ID_OFFSET);
        onTrigger({ ident, payload, client });
      })
      .catch(() => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

function readRequest(client: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    let expected: number | undefined;
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      if (expected === undefined && buffered.length >= MSG_HEADER_SIZE) {
        const { type, len } = decodeHeader(buffered);
        if (
          type !== MsgType.TRIGGER_SERVICE4 ||
          len <= TRIGGER_SERVICE_PARAMS4_SIZE ||
          len > TRIGGER_SERVICE_PARAMS4_SIZE + MAX_SERVICE_NAME_LEN
        ) {
          finish(new Error('invalid request from qrexec-client-vm'));
          return;
        }
        expected = MSG_HEADER_SIZE + len;
      }
      if (expected !== undefined && buffered.length >= expected) {
        if (buffered.length > expected) finish(new Error('data after the request'));
        else finish(undefined, Buffer.from(buffered.subarray(MSG_HEADER_SIZE)));
      }
    };
    const onEnd = (): void => finish(new Error('qrexec-client-vm closed before its request was complete'));
    const finish = (error?: Error, payload?: Buffer): void => {
      client.off('data', onData);
      client.off('end', onEnd);
      if (payload) resolve(payload);
      else reject(error);
    };
    client.on('data', onData);
    client.on('end', onEnd);
  });
}
