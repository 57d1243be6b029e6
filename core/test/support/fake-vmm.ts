import {
  type DomainRuntime,
  type DomainSpec,
  type DomainStats,
  EventHub,
  type NetworkLink,
  type ShutdownOptions,
  supported,
  unsupported,
  type Vmm,
  type VmmCapabilities,
  VmmError,
  type VmmEvent,
} from '@odyssey/hal';

interface Dom {
  spec: DomainSpec;
  state: DomainRuntime['state'];
  xid: number;
}

/**
 * A test double of the HAL's Vmm for core unit tests: domains are records in
 * memory, and `crash(name)` plays a guest that dies on its own. Never used by
 * the daemon outside tests.
 */
export class FakeVmm implements Vmm {
  readonly domains = new Map<string, Dom>();
  readonly calls: string[] = [];
  private nextXid = 1;
  private hub = new EventHub();
  /** Set to make open() fail, as an unreachable hypervisor does. */
  openError: Error | null = null;

  capabilities(): VmmCapabilities {
    return {
      name: 'fake',
      isolation: 'process',
      guestImages: [],
      domainsOnClose: 'survive',
      virtModes: ['pvh', 'hvm'],
      pause: supported,
      suspend: supported,
      stats: supported,
      blockDevices: unsupported('test double'),
      pciDevices: unsupported('test double'),
      usbDevices: unsupported('test double'),
      vmToVmVchan: unsupported('test double'),
      network: supported,
    };
  }

  async open(): Promise<void> {
    if (this.openError) throw this.openError;
    this.hub = new EventHub();
  }

  async close(): Promise<void> {
    this.hub.close();
  }

  private dom(name: string): Dom {
    const d = this.domains.get(name);
    if (!d) throw new VmmError('no-such-domain', `no domain ${name}`);
    return d;
  }

  private emit(e: VmmEvent): void {
    this.hub.publish(e);
  }

  async define(spec: DomainSpec): Promise<void> {
    this.calls.push(`define ${spec.name}`);
    const old = this.domains.get(spec.name);
    this.domains.set(spec.name, { spec, state: old?.state ?? 'Halted', xid: old?.xid ?? -1 });
  }

  async undefine(name: string): Promise<void> {
    this.calls.push(`undefine ${name}`);
    this.domains.delete(name);
  }

  async start(name: string): Promise<void> {
    this.calls.push(`start ${name}`);
    const d = this.dom(name);
    if (d.state !== 'Halted') throw new VmmError('invalid-state', `${name} is running`);
    d.state = 'Running';
    d.xid = this.nextXid++;
    this.emit({ type: 'started', name });
  }

  async shutdown(name: string, _options: ShutdownOptions): Promise<void> {
    this.calls.push(`shutdown ${name}`);
    this.stop(name, 'shutdown');
  }

  async kill(name: string): Promise<void> {
    this.calls.push(`kill ${name}`);
    if (this.dom(name).state === 'Halted') throw new VmmError('invalid-state', `${name} is not running`);
    this.stop(name, 'destroyed');
  }

  /** A guest that dies on its own. */
  crash(name: string): void {
    this.stop(name, 'crashed');
  }

  /** Events published in one go, faster than anyone reads them (a hypervisor's flood). */
  publishBurst(events: readonly VmmEvent[]): void {
    for (const e of events) this.emit(e);
  }

  /** A guest that died on its own, its event not delivered yet. */
  crashSilently(name: string): void {
    const d = this.dom(name);
    d.state = 'Halted';
    d.xid = -1;
  }

  private stop(name: string, reason: 'shutdown' | 'destroyed' | 'crashed'): void {
    const d = this.dom(name);
    d.state = 'Halted';
    d.xid = -1;
    this.emit({ type: 'stopped', name, reason });
  }

  async pause(name: string): Promise<void> {
    this.calls.push(`pause ${name}`);
    this.dom(name).state = 'Paused';
  }

  async unpause(name: string): Promise<void> {
    this.calls.push(`unpause ${name}`);
    this.dom(name).state = 'Running';
  }

  async suspend(name: string): Promise<void> {
    this.calls.push(`suspend ${name}`);
    this.dom(name).state = 'Suspended';
  }

  async resume(name: string): Promise<void> {
    this.calls.push(`resume ${name}`);
    this.dom(name).state = 'Running';
  }

  async state(name: string): Promise<DomainRuntime> {
    const d = this.domains.get(name);
    if (!d || d.state === 'Halted')
      return { state: 'Halted', xid: -1, memoryKb: 0, memoryMaxKb: 0, cpuTimeNs: 0 };
    return {
      state: d.state,
      xid: d.xid,
      memoryKb: d.spec.memoryMiB * 1024,
      memoryMaxKb: Math.max(d.spec.memoryMiB, d.spec.maxMemoryMiB) * 1024,
      cpuTimeNs: 1_500_000_000,
    };
  }

  async stats(): Promise<readonly DomainStats[]> {
    return [...this.domains.entries()]
      .filter(([, d]) => d.state !== 'Halted')
      .map(([name, d]) => ({
        name,
        memoryKb: d.spec.memoryMiB * 1024,
        memoryMaxKb: d.spec.maxMemoryMiB * 1024,
        cpuTimeNs: 2_000_000_000,
        cpuUsagePercent: 7,
        onlineVcpus: d.spec.vcpus,
      }));
  }

  /** The links whose backend side is attached, `frontend>backend`. */
  readonly links = new Set<string>();

  async attachLink(link: NetworkLink): Promise<void> {
    this.calls.push(`attachLink ${link.frontendDomain}>${link.backendDomain} ${link.ip} ${link.mac}`);
    for (const name of [link.frontendDomain, link.backendDomain]) {
      if (this.dom(name).state === 'Halted') throw new VmmError('invalid-state', `${name} is not running`);
    }
    this.links.add(`${link.frontendDomain}>${link.backendDomain}`);
  }

  async detachLink(link: NetworkLink): Promise<void> {
    this.calls.push(`detachLink ${link.frontendDomain}>${link.backendDomain}`);
    this.links.delete(`${link.frontendDomain}>${link.backendDomain}`);
  }

  events(): AsyncIterable<VmmEvent> {
    return this.hub.subscribe();
  }
}
