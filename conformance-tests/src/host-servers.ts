import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';

/*
 * Servers the network checks start on the host's loopback, the only addresses a guest's traffic
 * is ever sent to (QEMU's user-mode network shows the host's 127.0.0.1 to sys-net as 10.0.2.2).
 */

/** What a probe server sends first: a client that reads it has reached this server. */
export const PROBE_TOKEN = 'ODYSSEY-NET-OK\n';

/** One connection a server saw to its end. */
export interface Connection {
  readonly bytes: number;
  /** From the connection's accept to its end, ms. */
  readonly ms: number;
}

export interface ProbeServer {
  readonly port: number;
  /** Connections that ended, oldest first. */
  readonly connections: readonly Connection[];
  /** How many connections were accepted, ended or not. */
  accepted(): number;
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1 that greets each client with PROBE_TOKEN and counts what it sends back. */
export async function startProbeServer(): Promise<ProbeServer> {
  const connections: Connection[] = [];
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((socket) => {
    accepted += 1;
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    const begin = performance.now();
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
    socket.on('error', () => undefined);
    socket.on('close', () => connections.push({ bytes, ms: performance.now() - begin }));
    socket.write(PROBE_TOKEN);
    socket.on('end', () => socket.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the probe server has no TCP port');
  return {
    port: address.port,
    connections,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of open) socket.destroy();
      }),
  };
}

export interface DnsServer {
  /** Queries received, `TYPE name`. */
  readonly queries: readonly string[];
  close(): Promise<void>;
}

/**
 * A DNS server on 127.0.0.1:53 (UDP) that knows one name: A queries for it are answered with
 * `address`, anything else about it with no record, other names with NXDOMAIN. Rejects with the
 * bind error (EADDRINUSE when the port is taken).
 */
export async function startDnsServer(name: string, address: string): Promise<DnsServer> {
  const queries: string[] = [];
  const socket: UdpSocket = createSocket('udp4');
  socket.on('message', (message, peer) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    if (!question) return;
    queries.push(`${question.type} ${question.name}`);
    const known = question.name.toLowerCase() === name.toLowerCase();
    const answers: dnsPacket.Answer[] =
      known && question.type === 'A' ? [{ type: 'A', name: question.name, ttl: 5, data: address }] : [];
    const NXDOMAIN = 3;
    const reply = dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags:
        dnsPacket.AUTHORITATIVE_ANSWER |
        ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) |
        (known ? 0 : NXDOMAIN),
      questions: [question],
      answers,
    });
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(53, '127.0.0.1', () => {
      socket.off('error', reject);
      resolve();
    });
  });
  return { queries, close: () => new Promise<void>((resolve) => socket.close(() => resolve())) };
}
