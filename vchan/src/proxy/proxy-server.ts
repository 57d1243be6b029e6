import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import type { Vchan, VchanTransport } from '@odyssey/hal';

import { parseRequest, readLine, type ProxyReply, type ProxyRequest } from './protocol.js';

export interface VchanProxy {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Lets other programs of a domain open vchans through the one process that owns the domain's
 * transport. A KVM guest's vchans all share one virtio-serial port that only one process can
 * hold (the agent), so qrexec-client-vm asks the agent, over this socket, to listen or connect
 * for it and then speaks the vchan's bytes on the same connection.
 */
export async function serveVchanProxy(
  transport: VchanTransport,
  path: string,
  log: (message: string) => void = () => undefined,
): Promise<VchanProxy> {
  await rm(path, { force: true });
  const server = createServer((client) => {
    client.on('error', () => client.destroy());
    handle(transport, client).catch((error: unknown) => {
      log(`vchan proxy: ${(error as Error).message}`);
      client.destroy();
    });
  });
  await listen(server, path);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
      }),
  };
}

async function handle(transport: VchanTransport, client: Socket): Promise<void> {
  const request = parseRequest(await readLine(client));
  let vchan: Vchan;
  try {
    vchan = await open(transport, request);
  } catch (error) {
    reply(client, { ok: false, error: (error as Error).message });
    client.end();
    return;
  }
  if (client.destroyed) {
    vchan.destroy();
    return;
  }
  reply(client, { ok: true });
  splice(client, vchan);
}

function open(transport: VchanTransport, request: ProxyRequest): Promise<Vchan> {
  if (request.op === 'connect')
    return transport.connect(
      request.domain,
      request.port,
      request.timeoutMs === undefined ? {} : { timeoutMs: request.timeoutMs },
    );
  return transport.listen(request.domain, request.port, {
    ...(request.readMin === undefined ? {} : { readMin: request.readMin }),
    ...(request.writeMin === undefined ? {} : { writeMin: request.writeMin }),
  });
}

function reply(client: Socket, answer: ProxyReply): void {
  client.write(`${JSON.stringify(answer)}\n`);
}

/**
 * Bytes both ways; a vchan has no half-close, so either side ending closes both. The vchan's end,
 * failed or not, lets the program read what the proxy still holds for it (a dead peer's last bytes).
 */
function splice(client: Socket, vchan: Vchan): void {
  // 'close' follows.
  vchan.on('error', () => undefined);
  client.pipe(vchan);
  vchan.pipe(client);
  client.once('close', () => vchan.destroy());
  vchan.once('close', () => client.destroySoon());
  client.resume();
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
