import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Two ends of a real AF_UNIX stream: what a vchan looks like to the protocol code, without a transport. */
export async function socketPair(): Promise<{ left: Socket; right: Socket; close: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'qrexec-pair-'));
  const path = join(dir, 'pair.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const left = createConnection(path);
  const right = await accepted;
  server.close();
  return {
    left,
    right,
    close: async () => {
      left.destroy();
      right.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
