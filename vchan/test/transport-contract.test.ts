import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ChannelMux, KvmGuestTransport, KvmHostTransport } from '../src/kvm/index.js';
import { SocketVchanTransport, XenVchanTransport } from '../src/index.js';
import { vchanContract } from './transport-contract.js';
import { FakeXen } from './xen-fake.js';

vchanContract('socket (two transports over AF_UNIX)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vchan-contract-'));
  return {
    ring: 64 * 1024,
    listener: new SocketVchanTransport({ localDomain: '3', dir }),
    clientDomain: '0',
    dialer: new SocketVchanTransport({ localDomain: '0', dir }),
    serverDomain: '3',
    close: () => rm(dir, { recursive: true, force: true }),
  };
});

// The guest's virtio-serial port is played by a UNIX socket server standing in for QEMU's
// chardev: the host transport dials it, a guest-side ChannelMux serves the connection.
vchanContract('KVM (guest and host mux ends in one process)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vchan-contract-'));
  const mux = new ChannelMux('guest', '0');
  const links = new Set<Socket>();
  const port = createServer((socket) => {
    if (mux.linked) mux.detach();
    links.add(socket);
    mux.attach((bytes) => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => mux.receive(chunk));
    socket.on('close', () => links.delete(socket));
  });
  await new Promise<void>((resolve) => port.listen(join(dir, 'vm.sock'), resolve));
  const host = new KvmHostTransport({ channelSocket: (d) => join(dir, `${d}.sock`), retryIntervalMs: 5 });
  return {
    ring: 64 * 1024,
    listener: new KvmGuestTransport(mux, { retryIntervalMs: 5 }),
    clientDomain: '0',
    dialer: host,
    serverDomain: 'vm',
    close: async () => {
      host.close();
      for (const link of links) link.destroy();
      await new Promise((resolve) => port.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
});

// With qrexec's rings only: the 1 MiB bulk rings, one channel at a time, have tests of their own.
vchanContract('Xen (libxenvchan played by the recording fake)', async () => {
  const xen = new FakeXen();
  const transport = (domid: number): XenVchanTransport =>
    new XenVchanTransport({
      ...xen.domain(domid),
      evtchnDevice: '/dev/null',
      retryIntervalMs: 5,
      bulkRingSize: 64 * 1024,
    });
  return {
    ring: 64 * 1024,
    listener: transport(3),
    clientDomain: '0',
    dialer: transport(0),
    serverDomain: '3',
    check: () => expect(xen.violations).toEqual([]),
    close: async () => undefined,
  };
});
