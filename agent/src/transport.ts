import type { VchanTransport } from '@odyssey/core';
import { SocketVchanTransport } from '@odyssey/vchan';

export interface AgentTransportOptions {
  /** This domain's id, the name vchan peers know it by. */
  readonly domainId: string;
  /** Directory of the vchan sockets. */
  readonly vchanDir?: string;
}

/**
 * The transport a process domain's agent speaks. Guests of real VMMs will get
 * their backend's in-guest transport here.
 */
export function createAgentTransport(options: AgentTransportOptions): VchanTransport {
  return new SocketVchanTransport({
    localDomain: options.domainId,
    ...(options.vchanDir ? { dir: options.vchanDir } : {}),
  });
}
