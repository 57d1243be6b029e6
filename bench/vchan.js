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
const { MessageReader, MsgType, maxChunkPayload, writeMessage } = await import(
  join(ROOT, 'qrexec/dist/index.js')
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

/** Reads qrexec data messages until their payloads add up to `bytes`, then answers one byte. */
async function messageSink(vchan) {
  const reader = new MessageReader(vchan);
  for (let seen = 0; seen < bytes;) {
    const message = await reader.expect();
    if (message.type !== MsgType.DATA_STDIN)
      throw new Error(`unexpected message 0x${message.type.toString(16)}`);
    seen += message.payload.length;
  }
  vchan.write(Buffer.from([1]));
}

async function serveSink(kind, dir) {
  if (kind === 'raw') {
    const server = createServer((socket) => sink(socket, (b) => socket.write(b)));
    await new Promise((resolve) => server.listen(join(dir, 'raw.sock'), resolve));
  } else if (kind === 'hot') {
    // Node gives a custom read buffer only to a socket it connects, so this sink connects to the
    // writer. Every read(2) lands in the same cache-resident buffer: the pipe without the memory
    // traffic of a fresh buffer per read, which no stream handing chunks to a consumer can avoid.
    process.send?.('ready');
    await once(process, 'message');
    let seen = 0;
    const socket = createConnection({
      path: join(dir, 'hot.sock'),
      onread: {
        buffer: Buffer.allocUnsafe(1 << 20),
        callback: (n) => {
          seen += n;
          if (seen === bytes) socket.write(Buffer.from([1]));
        },
      },
    });
    return;
  } else if (kind === 'qrexec') {
    process.send?.('ready');
    await messageSink(await new SocketVchanTransport({ localDomain: '1', dir }).listen('0', PORT));
    return;
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

async function connectWriter(kind, dir, child) {
  if (kind === 'raw') {
    const socket = createConnection(join(dir, 'raw.sock'));
    await once(socket, 'connect');
    return { stream: socket, close: () => socket.destroy() };
  }
  if (kind === 'hot') {
    const server = createServer();
    await new Promise((resolve) => server.listen(join(dir, 'hot.sock'), resolve));
    child.send('connect');
    const [socket] = await once(server, 'connection');
    server.close();
    return { stream: socket, close: () => socket.destroy() };
  }
  if (kind === 'qrexec') {
    const vchan = await new SocketVchanTransport({ localDomain: '0', dir }).connect('1', PORT);
    return { stream: vchan, close: () => vchan.destroy(), messages: true };
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
    // The parent's flags (e.g. --cpu-prof) apply to the sink too, so one command profiles both ends.
    [
      ...process.execArgv,
      new URL(import.meta.url).pathname,
      '--sink',
      kind,
      '--dir',
      dir,
      '--bytes',
      String(bytes),
    ],
    {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  try {
    await once(child, 'message');
    const { stream, close, messages } = await connectWriter(kind, dir, child);
    const chunk = Buffer.alloc(writeSize, 0xa5);
    const limit = maxChunkPayload(3);
    const begin = performance.now();
    const done = once(stream, 'data');
    for (let sent = 0; sent < bytes; sent += chunk.length) {
      const piece = bytes - sent < chunk.length ? chunk.subarray(0, bytes - sent) : chunk;
      // As the data phase sends a service's output: data messages of at most 64 KiB each.
      if (messages) {
        for (let at = 0; at < piece.length; at += limit)
          await writeMessage(stream, MsgType.DATA_STDIN, piece.subarray(at, at + limit));
      } else if (!stream.write(piece)) await once(stream, 'drain');
    }
    await done;
    const seconds = (performance.now() - begin) / 1000;
    close();
    return bytes / (1 << 20) / seconds;
  } finally {
    // A sink that exits by itself writes its --cpu-prof profile; a killed one would not.
    child.disconnect();
    await once(child, 'exit');
    await rm(dir, { recursive: true, force: true });
  }
}

const REFERENCES = ['raw', 'hot'];

/** Best of `rounds` of each, all taking turns in every round, so a busy neighbour skews them alike. */
async function bestOfRounds(kinds) {
  const best = Object.fromEntries(kinds.map((kind) => [kind, 0]));
  for (let i = 0; i < Number(values.rounds); i++)
    for (const kind of kinds) best[kind] = Math.max(best[kind], await measure(kind));
  return best;
}

const share = (part, whole) => Math.round((part / whole) * 100) / 100;

if (values.sink) {
  process.on('disconnect', () => process.exit(0));
  await serveSink(values.sink, values.dir);
} else {
  const kinds = values.only ? values.only.split(',') : ['socket', 'qrexec', 'kvm'];
  const best = await bestOfRounds([...REFERENCES, ...kinds]);
  const result = {};
  for (const kind of kinds)
    result[kind] = {
      mbPerSecond: Math.round(best[kind]),
      reference: Math.round(best.raw),
      ratio: share(best[kind], best.raw),
      hot: Math.round(best.hot),
      hotRatio: share(best[kind], best.hot),
    };
  process.stdout.write(`${bytes} bytes in writes of ${writeSize}, best of ${values.rounds}\n`);
  process.stdout.write(
    `references: raw UNIX socket ${Math.round(best.raw)} MB/s (a fresh buffer per read, as a stream hands ` +
      `out), same socket into one reused buffer ${Math.round(best.hot)} MB/s (the pipe's ceiling)\n`,
  );
  process.stdout.write('transport   MB/s   share of raw   share of reused-buffer ceiling\n');
  for (const [kind, r] of Object.entries(result))
    process.stdout.write(
      `${kind.padEnd(10)} ${String(r.mbPerSecond).padStart(5)}   ${String(r.ratio).padStart(12)}   ${r.hotRatio}\n`,
    );
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
