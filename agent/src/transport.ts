import type { VchanTransport } from '@odyssey/hal';
import { ProxyVchanTransport, SocketVchanTransport } from '@odyssey/vchan';

export type AgentTransportOptions =
  | {
      /** This domain's id, the name vchan peers know it by. */
      readonly domainId: string;
      /** Directory of the vchan sockets. */
      readonly vchanDir?: string | undefined;
    }
  | {
      /**
       * The agent's vchan proxy socket, where the domain's one transport is owned by the agent
       * (a KVM guest's virtio-serial port): vchans are then opened through the agent.
       */
      readonly proxySocket: string;
    };

/**
 * The transport a domain's programs speak: the socket transport of process domains, or the
 * agent's proxy inside guests whose transport only the agent can hold.
 */
export function createAgentTransport(options: AgentTransportOptions): VchanTransport {
  if ('proxySocket' in options) return new ProxyVchanTransport({ path: options.proxySocket });
  return new SocketVchanTransport({
    localDomain: options.domainId,
    ...(options.vchanDir ? { dir: options.vchanDir } : {}),
  });
}
