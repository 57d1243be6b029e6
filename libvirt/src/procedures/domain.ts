import { Proc } from './numbers.js';
import {
  LIST_MAX,
  readDomain,
  readList,
  readString,
  writeDomain,
  writeUuid,
  type Domain,
} from './handles.js';
import { readTypedParams, type TypedParamValue } from './typed-params.js';
import { call, type RpcSource } from './rpc.js';

/** QEMU_PROC_DOMAIN_MONITOR_COMMAND of libvirt's QEMU program. */
const QEMU_PROC_DOMAIN_MONITOR_COMMAND = 1;

/** virDomainState. */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;

/** virConnectListAllDomainsFlags. */
export const ListDomainsFlags = {
  ACTIVE: 1,
  INACTIVE: 2,
  PERSISTENT: 4,
  TRANSIENT: 8,
  RUNNING: 16,
  PAUSED: 32,
  SHUTOFF: 64,
  OTHER: 128,
  MANAGEDSAVE: 256,
  NO_MANAGEDSAVE: 512,
  AUTOSTART: 1024,
  NO_AUTOSTART: 2048,
  HAS_SNAPSHOT: 4096,
  NO_SNAPSHOT: 8192,
} as const;

/** virDomainDefineFlags. */
export const DefineFlags = { VALIDATE: 1 } as const;
/** virDomainCreateFlags. */
export const CreateFlags = {
  START_PAUSED: 1,
  AUTODESTROY: 2,
  BYPASS_CACHE: 4,
  FORCE_BOOT: 8,
  VALIDATE: 16,
} as const;
/** virDomainUndefineFlagsValues. */
export const UndefineFlags = {
  MANAGED_SAVE: 1,
  SNAPSHOTS_METADATA: 2,
  NVRAM: 4,
  KEEP_NVRAM: 8,
  CHECKPOINTS_METADATA: 16,
  TPM: 32,
  KEEP_TPM: 64,
} as const;
/** virDomainDestroyFlagsValues. */
export const DestroyFlags = { GRACEFUL: 1, REMOVE_LOGS: 2 } as const;
/** virDomainShutdownFlagValues: which mechanism asks the guest to shut down. */
export const ShutdownFlags = {
  ACPI_POWER_BTN: 1,
  GUEST_AGENT: 2,
  INITCTL: 4,
  SIGNAL: 8,
  PARAVIRT: 16,
} as const;
/** virDomainXMLFlags. */
export const XmlFlags = { SECURE: 1, INACTIVE: 2, UPDATE_CPU: 4, MIGRATABLE: 8 } as const;
/** virDomainDeviceModifyFlags: whether a device change applies to the running domain, its definition, or both. */
export const DeviceModifyFlags = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;
/** virNodeSuspendTarget. */
export const SuspendTarget = { MEM: 0, DISK: 1, HYBRID: 2 } as const;

/** virDomainMemoryStatTags: what one virDomainMemoryStats entry measures. */
export const MemoryStatTag = {
  SWAP_IN: 0,
  SWAP_OUT: 1,
  MAJOR_FAULT: 2,
  MINOR_FAULT: 3,
  UNUSED: 4,
  AVAILABLE: 5,
  ACTUAL_BALLOON: 6,
  /** Resident memory of the process that runs the domain (QEMU), KiB. */
  RSS: 7,
  USABLE: 8,
  LAST_UPDATE: 9,
  DISK_CACHES: 10,
  HUGETLB_PGALLOC: 11,
  HUGETLB_PGFAIL: 12,
} as const;

/** VIR_DOMAIN_MEMORY_STAT_NR of libvirt 9: how many tags a driver may report at most. */
const MEMORY_STAT_NR = 13;
/** REMOTE_DOMAIN_MEMORY_STATS_MAX. */
const MEMORY_STATS_MAX = 1024;

export interface MemoryStat {
  tag: number;
  val: bigint;
}

export interface DomainInfo {
  state: number;
  /** KiB. */
  maxMemory: bigint;
  /** KiB. */
  memory: bigint;
  vcpus: number;
  /** Nanoseconds of CPU time used. */
  cpuTime: bigint;
}

export interface DomainStateInfo {
  state: number;
  /** A per-state reason (virDomainRunningReason, virDomainShutoffReason, ...). */
  reason: number;
}

/** REMOTE_DOMAIN_GET_CPU_STATS_MAX. */
const CPU_STATS_MAX = 2048;

/** Domain calls: lookup, define, lifecycle, state. */
export class DomainApi {
  constructor(private readonly rpc: RpcSource) {}

  lookupByName(name: string): Promise<Domain> {
    return call(this.rpc, Proc.DOMAIN_LOOKUP_BY_NAME, (w) => w.string(name), readDomain);
  }

  lookupByUuid(uuid: string): Promise<Domain> {
    return call(this.rpc, Proc.DOMAIN_LOOKUP_BY_UUID, (w) => writeUuid(w, uuid), readDomain);
  }

  lookupById(id: number): Promise<Domain> {
    return call(this.rpc, Proc.DOMAIN_LOOKUP_BY_ID, (w) => w.int(id), readDomain);
  }

  /** Defines (or redefines) a persistent domain. */
  defineXML(xml: string, flags = 0): Promise<Domain> {
    return call(
      this.rpc,
      Proc.DOMAIN_DEFINE_XML_FLAGS,
      (w) => {
        w.string(xml);
        w.uint(flags);
      },
      readDomain,
    );
  }

  undefine(dom: Domain, flags = 0): Promise<void> {
    return this.domFlags(Proc.DOMAIN_UNDEFINE_FLAGS, dom, flags);
  }

  /** Starts a defined domain; returns it with its new id. */
  create(dom: Domain, flags = 0): Promise<Domain> {
    return call(
      this.rpc,
      Proc.DOMAIN_CREATE_WITH_FLAGS,
      (w) => {
        writeDomain(w, dom);
        w.uint(flags);
      },
      readDomain,
    );
  }

  /** Asks the guest to shut down; returns before it has. */
  shutdown(dom: Domain, flags = 0): Promise<void> {
    return this.domFlags(Proc.DOMAIN_SHUTDOWN_FLAGS, dom, flags);
  }

  reboot(dom: Domain, flags = 0): Promise<void> {
    return this.domFlags(Proc.DOMAIN_REBOOT, dom, flags);
  }

  /** Stops the domain at once (the hypervisor process is killed). */
  destroy(dom: Domain, flags = 0): Promise<void> {
    return this.domFlags(Proc.DOMAIN_DESTROY_FLAGS, dom, flags);
  }

  /** Pauses the vCPUs; memory stays allocated. */
  suspend(dom: Domain): Promise<void> {
    return call(this.rpc, Proc.DOMAIN_SUSPEND, (w) => writeDomain(w, dom));
  }

  resume(dom: Domain): Promise<void> {
    return call(this.rpc, Proc.DOMAIN_RESUME, (w) => writeDomain(w, dom));
  }

  /** Saves memory to libvirt's managed image and stops; the next `create` restores it. */
  managedSave(dom: Domain, flags = 0): Promise<void> {
    return this.domFlags(Proc.DOMAIN_MANAGED_SAVE, dom, flags);
  }

  hasManagedSaveImage(dom: Domain): Promise<boolean> {
    return call(
      this.rpc,
      Proc.DOMAIN_HAS_MANAGED_SAVE_IMAGE,
      (w) => {
        writeDomain(w, dom);
        w.uint(0);
      },
      (r) => r.int() !== 0,
    );
  }

  managedSaveRemove(dom: Domain): Promise<void> {
    return this.domFlags(Proc.DOMAIN_MANAGED_SAVE_REMOVE, dom, 0);
  }

  /** Guest power management suspend (needs a guest agent); `durationS` 0 means indefinitely. */
  pmSuspendForDuration(dom: Domain, target: number, durationS = 0n, flags = 0): Promise<void> {
    return call(this.rpc, Proc.DOMAIN_PM_SUSPEND_FOR_DURATION, (w) => {
      writeDomain(w, dom);
      w.uint(target);
      w.uhyper(durationS);
      w.uint(flags);
    });
  }

  pmWakeup(dom: Domain): Promise<void> {
    return this.domFlags(Proc.DOMAIN_PM_WAKEUP, dom, 0);
  }

  getInfo(dom: Domain): Promise<DomainInfo> {
    return call(
      this.rpc,
      Proc.DOMAIN_GET_INFO,
      (w) => writeDomain(w, dom),
      (r) => ({
        state: r.uint(),
        maxMemory: r.uhyper(),
        memory: r.uhyper(),
        vcpus: r.uint(),
        cpuTime: r.uhyper(),
      }),
    );
  }

  /**
   * virDomainMemoryStats of a running domain: what the driver measures (tags it lacks are left
   * out), in KiB for the sizes.
   */
  memoryStats(dom: Domain): Promise<MemoryStat[]> {
    return call(
      this.rpc,
      Proc.DOMAIN_MEMORY_STATS,
      (w) => {
        writeDomain(w, dom);
        w.uint(MEMORY_STAT_NR);
        w.uint(0);
      },
      (r) => r.array((e) => ({ tag: e.int(), val: e.uhyper() }), MEMORY_STATS_MAX),
    );
  }

  getState(dom: Domain): Promise<DomainStateInfo> {
    return call(
      this.rpc,
      Proc.DOMAIN_GET_STATE,
      (w) => {
        writeDomain(w, dom);
        w.uint(0);
      },
      (r) => ({ state: r.int(), reason: r.int() }),
    );
  }

  getXMLDesc(dom: Domain, flags = 0): Promise<string> {
    return call(
      this.rpc,
      Proc.DOMAIN_GET_XML_DESC,
      (w) => {
        writeDomain(w, dom);
        w.uint(flags);
      },
      readString,
    );
  }

  /** Adds the device `xml` describes (hot-plug with DeviceModifyFlags.LIVE). */
  attachDevice(dom: Domain, xml: string, flags = 0): Promise<void> {
    return this.domXml(Proc.DOMAIN_ATTACH_DEVICE_FLAGS, dom, xml, flags);
  }

  /** Removes the device `xml` identifies; for a live PCI device the guest is asked to release it. */
  detachDevice(dom: Domain, xml: string, flags = 0): Promise<void> {
    return this.domXml(Proc.DOMAIN_DETACH_DEVICE_FLAGS, dom, xml, flags);
  }

  /**
   * Sends `command` to the domain's QEMU monitor (QMP JSON; flags 1: HMP text) and returns its
   * answer: virDomainQemuMonitorCommand, for what libvirt itself cannot do. libvirt marks the
   * domain tainted.
   */
  async qemuMonitorCommand(dom: Domain, command: string, flags = 0): Promise<string> {
    // async: a missing connection (rpc() throws) rejects like any other failure.
    return this.rpc().callQemu(
      QEMU_PROC_DOMAIN_MONITOR_COMMAND,
      (w) => {
        writeDomain(w, dom);
        w.string(command);
        w.uint(flags);
      },
      readString,
    );
  }

  /** All domains matching `flags` (0: every domain, running or not). */
  listAll(flags = 0): Promise<Domain[]> {
    return call(
      this.rpc,
      Proc.CONNECT_LIST_ALL_DOMAINS,
      (w) => {
        w.int(1);
        w.uint(flags);
      },
      (r) => readList(r, readDomain),
    );
  }

  /**
   * Whole-domain CPU statistics, e.g. `cpu_time`, `user_time`, `system_time` (ns). Two calls,
   * because the daemon first has to say how many parameters the driver reports.
   */
  async getCpuStats(dom: Domain): Promise<Record<string, TypedParamValue>> {
    const totals = (nparams: number) =>
      call(
        this.rpc,
        Proc.DOMAIN_GET_CPU_STATS,
        (w) => {
          writeDomain(w, dom);
          w.uint(nparams);
          w.int(-1);
          w.uint(1);
          w.uint(0);
        },
        (r) => ({ params: readTypedParams(r, CPU_STATS_MAX), nparams: r.int() }),
      );
    const { nparams } = await totals(0);
    return (await totals(Math.min(nparams, LIST_MAX))).params;
  }

  private domXml(procedure: number, dom: Domain, xml: string, flags: number): Promise<void> {
    return call(this.rpc, procedure, (w) => {
      writeDomain(w, dom);
      w.string(xml);
      w.uint(flags);
    });
  }

  private domFlags(procedure: number, dom: Domain, flags: number): Promise<void> {
    return call(this.rpc, procedure, (w) => {
      writeDomain(w, dom);
      w.uint(flags);
    });
  }
}
