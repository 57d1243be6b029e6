import { join } from 'node:path';

/**
 * Where the backend keeps its files under `BackendContext.runtimeDir`: one
 * vchan socket directory shared by dom0 and every domain (vchan peers find
 * each other by socket name), and one directory per domain.
 */
export class ProcessLayout {
  constructor(readonly runtimeDir: string) {}

  get vchanDir(): string {
    return join(this.runtimeDir, 'vchan');
  }

  get domainsDir(): string {
    return join(this.runtimeDir, 'process');
  }

  domainDir(name: string): string {
    return join(this.domainsDir, name);
  }

  /** The socket qrexec-client-vm of the domain talks to (upstream's /var/run/qubes/qrexec-agent). */
  agentSocket(name: string): string {
    return join(this.domainDir(name), 'qrexec-agent.sock');
  }

  /** The domain's QubesDB socket, where qubesdb-read finds it (upstream's /var/run/qubes/qubesdb.sock). */
  qubesdbSocket(name: string): string {
    return join(this.domainDir(name), 'qubesdb.sock');
  }

  /** The domain's qrexec services (upstream's /etc/qubes-rpc in the VM); kept across restarts. */
  serviceDir(name: string): string {
    return join(this.domainDir(name), 'qubes-rpc');
  }

  /**
   * Services every domain has after its own (upstream's /etc/qubes-rpc of the template they share):
   * process domains share one host, so one directory serves them all, disposables included.
   */
  get sharedServiceDir(): string {
    return join(this.runtimeDir, 'qubes-rpc');
  }

  consoleLog(name: string): string {
    return join(this.domainDir(name), 'console.log');
  }

  /** The domain's serial console: a link to the pty's slave, and the pid of the socat holding its master. */
  consolePty(name: string): string {
    return join(this.domainDir(name), 'console.pty');
  }

  consolePid(name: string): string {
    return join(this.domainDir(name), 'console.pid');
  }

  /** What a later daemon needs to find the running domain again. */
  record(name: string): string {
    return join(this.domainDir(name), 'domain.json');
  }
}
