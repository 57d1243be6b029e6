import { createSocket, type Socket } from 'node:dgram';
import { LINK_ADDRESS, type LinkPorts } from './network-xml.js';

function bindAny(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, LINK_ADDRESS, () => resolve(socket));
  });
}

/**
 * UDP ports for links, two per link. The kernel chooses them (a bind to port 0 gets a port no
 * socket holds), so a port some other program uses is never handed out. That alone is not
 * enough: a link's backend port is bound only while its netvm runs with the link attached, so
 * between a netvm's stop and its restart nothing holds it; every port given to a link is
 * therefore kept here until the link is given up, and never handed to a second link.
 * What is left is the moment between the probe and QEMU's own bind, where another program could
 * take the port: QEMU then fails to bind, and the start or attach fails with that error rather
 * than a link joined to the wrong peer.
 */
export class LinkPortPool {
  private readonly owner = new Map<number, string>();

  /** Two fresh ports for the link of `frontend`, replacing any it held. */
  async allocate(frontend: string): Promise<LinkPorts> {
    this.release(frontend);
    const held: Socket[] = [];
    try {
      const ports: number[] = [];
      while (ports.length < 2) {
        const socket = await bindAny();
        held.push(socket);
        const { port } = socket.address();
        if (!this.owner.has(port)) ports.push(port);
      }
      const [a, b] = ports as [number, number];
      this.owner.set(a, frontend).set(b, frontend);
      return { frontend: a, backend: b };
    } finally {
      for (const socket of held) socket.close();
    }
  }

  /** Takes note of ports a running domain already uses (read back from its XML). */
  claim(frontend: string, ports: LinkPorts): void {
    this.owner.set(ports.frontend, frontend).set(ports.backend, frontend);
  }

  release(frontend: string): void {
    for (const [port, name] of this.owner) if (name === frontend) this.owner.delete(port);
  }

  /** The ports held for `frontend`'s link (for tests and diagnostics). */
  held(frontend: string): number[] {
    return [...this.owner].filter(([, name]) => name === frontend).map(([port]) => port);
  }
}
