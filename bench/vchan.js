// bench:vchan — one-way throughput of the vchan transports between two processes, each printed
// beside a reference measured in the same run: a raw UNIX stream socket between the same two
// processes, with the same payload and write size. The KVM transport runs its host and guest
// ends over a UNIX socket standing in for the virtio-serial port (what the mux and its credits
// cost; a TCG guest's virtio-serial is measured by the conformance suite's vchan checks).
//
//   npm run bench:vchan -- [--bytes N] [--write-size N] [--rounds N]
//
// Prints a table and one JSON line: {transport: {mbPerSecond, reference, ratio}}.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { ROOT } from './lib.js';

const { SocketVchanTransport, ChannelMux, KvmGuestTransport, KvmHostTransport } = await import(
  join(ROOT, 'vchan/dist/index.js')
);

const PORT = 512;
const { values } = parseArgs({
  options: {
    bytes: { type: 'string', default: String(1 << 30) },
    'write-size': { type: 'string', default: String(1 << 20) },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    sink: { type: 'string' },
    dir: { type: 'string' },
  },
});
const bytes = Number(values.bytes);
const writeSize = Number(values['write-size']);

/** Reads `bytes` from `stream`, then answers one byte: the writer's clock stops on it. */
function sink(stream, write) {
  let seen = 0;
  stream.on('data', (chunk) => {
    seen += chunk.length;
    if (seen === bytes) write(Buffer.from([1]));
  });
}

async function serveSink(kind, dir) {
  if (kind === 'raw') {
    const server = createServer((socket) => sink(socket, (b) => socket.write(b)));
    await new Promise((resolve) => server.listen(join(dir, 'raw.sock'), resolve));
  } else if (kind === 'socket') {
    // The client retries until the socket exists, so ready may go before the connection.
    process.send?.('ready');
    const vchan = await new SocketVchanTransport({ localDomain: '1', dir }).listen('0', PORT);
    sink(vchan, (b) => vchan.write(b));
    return;
  } else if (kind === 'kvm') {
    // The guest end: a mux serving the stand-in channel, as the agent does on its virtio port.
    const mux = new ChannelMux('guest', '0');
    const guest = new KvmGuestTransport(mux);
    const channel = createServer((socket) => {
      mux.attach((frame) => socket.write(frame));
      socket.on('data', (chunk) => mux.receive(chunk));
    });
    await new Promise((resolve) => channel.listen(join(dir, 'vm.sock'), resolve));
    process.send?.('ready');
    const vchan = await guest.listen('0', PORT);
    sink(vchan, (b) => vchan.write(b));
    return;
  }
  process.send?.('ready');
}

async function connectWriter(kind, dir) {
  if (kind === 'raw') {
    const socket = createConnection(join(dir, 'raw.sock'));
    await once(socket, 'connect');
    return { stream: socket, close: () => socket.destroy() };
  }
  if (kind === 'socket') {
    const vchan = await new SocketVchanTransport({ localDomain: '0', dir }).connect('1', PORT);
    return { stream: vchan, close: () => vchan.destroy() };
  }
  const host = new KvmHostTransport({ channelSocket: (d) => join(dir, `${d}.sock`) });
  const vchan = await host.connect('vm', PORT);
  return {
    stream: vchan,
    close: () => {
      vchan.destroy();
      host.close();
    },
  };
}

async function measure(kind) {
  const dir = await mkdtemp(join(tmpdir(), 'vchan-bench-'));
  const child = spawn(
    process.execPath,
    [new URL(import.meta.url).pathname, '--sink', kind, '--dir', dir, '--bytes', String(bytes)],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  try {
    await once(child, 'message');
    const { stream, close } = await connectWriter(kind, dir);
    const chunk = Buffer.alloc(writeSize, 0xa5);
    const begin = performance.now();
    const done = once(stream, 'data');
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      const piece = bytes - sent < chunk.length ? chunk.subarray(0, bytes - sent) : chunk;
      if (!stream.write(piece)) await once(stream, 'drain');
    }
    await done;
    const seconds = (performance.now() - begin) / 1000;
    close();
    return bytes / (1 << 20) / seconds;
  } finally {
    child.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Best of `rounds`, the reference and the transport taking turns, so a busy neighbour skews both alike. */
async function bestAgainstReference(kind) {
  let top = 0;
  let reference = 0;
  for (let i = 0; i < Number(values.rounds); i++) {
    reference = Math.max(reference, await measure('raw'));
    top = Math.max(top, await measure(kind));
  }
  return { mbPerSecond: Math.round(top), reference: Math.round(reference) };
}

if (values.sink) {
  await serveSink(values.sink, values.dir);
} else {
  const result = {};
  for (const kind of values.only ? values.only.split(',') : ['socket', 'kvm']) {
    const { mbPerSecond, reference } = await bestAgainstReference(kind);
    result[kind] = { mbPerSecond, reference, ratio: Math.round((mbPerSecond / reference) * 100) / 100 };
  }
  process.stdout.write(`${bytes} bytes in writes of ${writeSize}, best of ${values.rounds}\n`);
  process.stdout.write('transport   MB/s   raw UNIX socket MB/s   ratio\n');
  for (const [kind, r] of Object.entries(result))
    process.stdout.write(
      `${kind.padEnd(10)} ${String(r.mbPerSecond).padStart(5)}   ${String(r.reference).padStart(20)}   ${r.ratio}\n`,
    );
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
