import { setTimeout as sleep } from 'node:timers/promises';
import { VmmError } from '@odyssey/hal';
import type { Domain } from '@odyssey/libvirt';
import { LINK_ADDRESS, type LinkPorts } from './network-xml.js';

/** How long a guest may take to release an unplugged NIC (ACPI hotplug; slow under TCG). */
export const UNPLUG_TIMEOUT_MS = 60_000;
export const UNPLUG_POLL_MS = 250;

/** Sends one QMP command to a domain's QEMU (libvirt's monitor passthrough) and returns the answer. */
export type MonitorCommand = (dom: Domain, command: string) => Promise<string>;

interface QmpAnswer {
  return?: unknown;
  error?: { class?: string; desc?: string };
}

/** The ids of a link NIC in QEMU, from its MAC: what finds it again. */
function ids(mac: string): { device: string; netdev: string } {
  const hex = mac.toLowerCase().replace(/:/g, '');
  return { device: `odyssey-link-${hex}`, netdev: `odyssey-linknd-${hex}` };
}

/**
 * Hot-plugs link NICs through QEMU's monitor. libvirt 9 cannot hot-plug an `<interface
 * type='udp'>` ("not implemented yet"), so QEMU is asked directly: a UDP socket netdev plus a
 * virtio-net-pci device on the `pc` machine's root bus, whose ACPI hotplug the guest kernel
 * handles. libvirt does not list these devices in the domain XML; QEMU's /machine/peripheral does,
 * by the ids named after the MAC, and the ports of each are kept here (a device this daemon did
 * not plug, after a restart, is found but its ports are unknown, and it is replaced).
 */
export class LinkMonitor {
  /** Ports of the NICs plugged here, by domain UUID then MAC. */
  private readonly ports = new Map<string, Map<string, LinkPorts>>();

  constructor(private readonly command: MonitorCommand) {}

  /** The ports of a NIC plugged here that the running domain still has, undefined when it has none. */
  async plugged(dom: Domain, mac: string, what: string): Promise<LinkPorts | undefined> {
    if (!(await this.devices(dom, what)).includes(ids(mac).device)) return undefined;
    return this.ports.get(dom.uuid)?.get(mac.toLowerCase());
  }

  /** Plugs a NIC with `mac` that binds `local` and sends to `remote` on the loopback. */
  async plug(dom: Domain, mac: string, local: number, remote: number, what: string): Promise<void> {
    const { device, netdev } = ids(mac);
    if ((await this.devices(dom, what)).includes(device)) await this.unplug(dom, mac, what);
    await this.qmp(dom, 'netdev_add', what, {
      type: 'socket',
      id: netdev,
      udp: `${LINK_ADDRESS}:${remote}`,
      localaddr: `${LINK_ADDRESS}:${local}`,
    });
    try {
      await this.qmp(dom, 'device_add', what, { driver: 'virtio-net-pci', id: device, netdev, mac });
    } catch (error) {
      await this.qmp(dom, 'netdev_del', what, { id: netdev }).catch(() => undefined);
      throw error;
    }
    const byMac = this.ports.get(dom.uuid) ?? new Map<string, LinkPorts>();
    byMac.set(mac.toLowerCase(), { frontend: local, backend: remote });
    this.ports.set(dom.uuid, byMac);
  }

  /** Asks the guest to release the NIC, waits until QEMU has removed it, then drops its netdev. */
  async unplug(dom: Domain, mac: string, what: string): Promise<void> {
    const { device, netdev } = ids(mac);
    await this.qmp(dom, 'device_del', what, { id: device });
    const deadline = Date.now() + UNPLUG_TIMEOUT_MS;
    while ((await this.devices(dom, what)).includes(device)) {
      if (Date.now() > deadline)
        throw new VmmError(
          'timeout',
          `${what}: ${dom.name} did not release interface ${mac} within ${UNPLUG_TIMEOUT_MS} ms`,
        );
      await sleep(UNPLUG_POLL_MS);
    }
    await this.qmp(dom, 'netdev_del', what, { id: netdev });
    this.ports.get(dom.uuid)?.delete(mac.toLowerCase());
  }

  /** Ids of the devices plugged by name (libvirt's and ours). */
  private async devices(dom: Domain, what: string): Promise<string[]> {
    const listed = await this.qmp(dom, 'qom-list', what, { path: '/machine/peripheral' });
    if (!Array.isArray(listed)) return [];
    return listed.map((entry: { name?: unknown }) => String(entry.name));
  }

  private async qmp(
    dom: Domain,
    execute: string,
    what: string,
    args: Record<string, unknown>,
  ): Promise<unknown> {
    let text: string;
    try {
      text = await this.command(dom, JSON.stringify({ execute, arguments: args }));
    } catch (error) {
      throw new VmmError(
        'failed',
        `${what}: QEMU monitor ${execute}: ${error instanceof Error ? error.message : String(error)}`,
        {
          cause: error,
        },
      );
    }
    const answer = JSON.parse(text) as QmpAnswer;
    if (answer.error) {
      throw new VmmError(
        'failed',
        `${what}: QEMU monitor ${execute}: ${answer.error.class ?? ''} ${answer.error.desc ?? ''}`.trim(),
      );
    }
    return answer.return;
  }
}
