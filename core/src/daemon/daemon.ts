import 'reflect-metadata';

import { mkdir } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';

import { container as rootContainer } from 'tsyringe';
import type { DependencyContainer } from 'tsyringe';

import { Dispatcher } from '../api/dispatcher.js';
import { INTERNAL_METHODS } from '../api/internal-method-table.js';
import { METHODS } from '../api/method-table.js';
import { AdminServer } from '../api/server.js';
import { removeBackupLeftovers } from '../backup/leftovers.js';
import { BackupService } from '../backup/service.js';
import type { Log } from '../log.js';
import type { ApiServices } from '../api/services.js';
import { loadBackend, type Backend as CreatedBackend, type VchanTransport, type Vmm } from '@odyssey/hal';
import { Backend } from '../lifecycle/backend.js';
import { DomainManager } from '../lifecycle/domain-manager.js';
import { App } from '../model/app.js';
import type { HostInfo } from '../model/app.js';
import type { Vm } from '../model/vm.js';
import { lockStateDir } from '../persist/state-lock.js';
import { StateStore } from '../persist/state-store.js';
import { PoolRegistry } from '../storage/pool-registry.js';
import { VmStorage } from '../storage/vm-storage.js';
import { PolicyStore, policyAgentSocket } from '@odyssey/qrexec';
import { API_TOKENS } from '../api/tokens.js';
import { TOKENS } from '../tokens.js';
import { PolicyAccess } from './access.js';
import { AppPolicy, policyLoadLog } from './app-policy.js';
import { DisposableCalls } from './disposable-calls.js';
import { PreloadPool } from '../lifecycle/preload-pool.js';
import { QrexecHost } from './qrexec-host.js';
import { QubesDbHost } from './qubesdb-host.js';
import { withQubesDbStart } from './qubesdb-vmm.js';
import { applySocketAccess } from './socket-access.js';
import type { SocketAccess } from './socket-access.js';
import { prepareAdminServices } from './qrexec-services.js';
import { withQrexecStart } from './qrexec-vmm.js';
import { VmDirFiles } from './vm-files.js';

export interface DaemonOptions {
  readonly socketPath: string;
  /** The internal socket (upstream's qubesd.internal.sock): system info for the policy tools. */
  readonly internalSocketPath?: string;
  /** qrexec policy directories (policy.d); without them callers other than dom0 are not filtered. */
  readonly policyDirs?: readonly string[];
  readonly legacyPolicyDir?: string;
  readonly stateDir: string;
  /** A backend package name or path (see @odyssey/hal's loadBackend), or a Vmm instance (tests). */
  readonly backend: string | Vmm;
  /** With a Vmm instance: its dom0 vchan transport, to run qrexec (a package brings its own). */
  readonly vchan?: VchanTransport;
  /**
   * dom0's qrexec service directory, prepared at start with a link per admin
   * method to the admin socket (default `<state dir>/qrexec-services`).
   */
  readonly qrexecServiceDir?: string;
  /** Where admin.backup.* finds `<profile>.conf` (default `<state dir>/backup-profiles`). */
  readonly backupProfileDir?: string;
  /** The admin socket's group and mode once it listens; without it the socket keeps what the umask gave. */
  readonly socketAccess?: SocketAccess;
  /**
   * Beyond upstream (off by default, as upstream has no such check): a caller
   * other than dom0 may set VM-valued properties, an explicit template and
   * device backends only to qubes the policy lets it list (see PolicyAccess).
   */
  readonly strictManagement?: boolean;
  readonly log: Log;
  /** How often to retry an unreachable hypervisor, ms. */
  readonly reconnectMs?: number;
  readonly host?: HostInfo;
}

/** Disposables are made by an API handler; the log learns of each from the app's own event. */
function logDisposables(app: App, log: Log): void {
  app.events.subscribe((event) => {
    if (event.name !== 'domain-add') return;
    const vm = app.domains.byName(event.args.find(([key]) => key === 'vm')?.[1] ?? '');
    if (vm?.klass !== 'DispVM') return;
    const template = vm.props.tryGet('template') as Vm | null | undefined;
    log('info', `disposable ${vm.name} created (template ${template?.name ?? 'none'})`);
  });
}

/**
 * The composition root: loads the state dir, wires the services in one
 * container, serves the admin socket, and keeps trying to reach the backend
 * (configuration calls never wait for it).
 */
export class Daemon {
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Runs once the backend brought a vchan transport; null while there is none. */
  private qrexecHost: QrexecHost | null = null;
  /** dom0's QubesDB of each running domain, on the same transport. */
  private qubesdbHost: QubesDbHost | null = null;

  private constructor(
    readonly app: App,
    readonly store: StateStore,
    readonly backend: Backend,
    readonly container: DependencyContainer,
    private readonly servers: readonly AdminServer[],
    private readonly policyStore: PolicyStore | null,
    private readonly policy: AppPolicy | null,
    private readonly unlock: () => void,
    private readonly options: DaemonOptions,
    private readonly created: CreatedBackend,
    private readonly preload: PreloadPool,
  ) {}

  get lifecycle(): DomainManager {
    return this.container.resolve(API_TOKENS.Lifecycle) as DomainManager;
  }

  static async start(options: DaemonOptions): Promise<Daemon> {
    const { stateDir, log } = options;
    await mkdir(stateDir, { recursive: true, mode: 0o770 });
    const unlock = lockStateDir(stateDir);
    try {
      const host = options.host ?? {
        memoryMiB: Math.floor(totalmem() / 1048576),
        cpus: availableParallelism(),
      };
      const registry = new PoolRegistry();
      const storage = new VmStorage(registry, stateDir);
      const app = new App(stateDir, host, storage);
      const store = new StateStore(join(stateDir, 'qubes.xml'), app, {
        pools: () => registry.poolNames().map((n) => registry.poolXml(n)),
        volumes: (vm) => storage.xml(vm),
      });
      const loaded = await store.load((msg) => log('warn', msg));
      for (const attrs of loaded?.pools ?? []) registry.loadPool(attrs);
      if (registry.poolNames().length === 0) await registry.initDefaultPools(stateDir);
      for (const [vm, attrs] of loaded?.volumes ?? []) storage.load(vm, attrs);
      if (!loaded) {
        app.createAdminVm(app.labels.get('black'));
        // What upstream's first init sets explicitly.
        app.props.init('default_pool_kernel', 'linux-kernel');
        await store.save();
      }
      logDisposables(app, log);
      const vmFiles = new VmDirFiles();
      for (const vm of app.domains.list()) vm.firewall = await vmFiles.loadFirewall(vm);

      // A backend that cannot be loaded or created is a configuration error: refuse to start.
      const created: CreatedBackend =
        typeof options.backend === 'string'
          ? await loadBackend(options.backend, { runtimeDir: join(stateDir, 'run'), log })
          : { vmm: options.backend, ...(options.vchan ? { vchan: options.vchan } : {}) };
      const backendName = created.vmm.capabilities().name;
      const backend = new Backend(backendName);
      const c = rootContainer.createChildContainer();
      c.register(TOKENS.App, { useValue: app });
      c.register(TOKENS.Log, { useValue: log });
      c.register(TOKENS.Backend, { useValue: backend });
      c.register(TOKENS.VmFiles, { useValue: vmFiles });
      c.register(TOKENS.Saver, { useValue: store });
      c.register(TOKENS.Storage, { useValue: storage });
      c.register(API_TOKENS.Methods, { useValue: METHODS });
      // A backup killed with the daemon leaves its work files and partial archive behind.
      const backupWork = join(stateDir, 'backup-work');
      await removeBackupLeftovers(backupWork);
      c.register(API_TOKENS.Backups, {
        useValue: new BackupService({
          app,
          storage,
          xml: store.writer,
          saver: store,
          profileDir: options.backupProfileDir ?? join(stateDir, 'backup-profiles'),
          workRoot: backupWork,
        }),
      });
      c.registerSingleton(API_TOKENS.Lifecycle, DomainManager);
      c.registerSingleton(API_TOKENS.Dispatcher, Dispatcher);
      const policyStore = options.policyDirs
        ? new PolicyStore({
            dirs: [...options.policyDirs],
            legacyDir: options.legacyPolicyDir,
            onReload: policyLoadLog(log),
          })
        : null;
      const policy = policyStore ? new AppPolicy(policyStore, app) : null;
      c.register(API_TOKENS.Access, {
        useValue: new PolicyAccess(policy, options.strictManagement ?? false),
      });
      const preload = new PreloadPool({
        app,
        storage,
        vmFiles,
        saver: store,
        log,
        lifecycle: c.resolve(API_TOKENS.Lifecycle),
      });
      c.register(API_TOKENS.Services, {
        useFactory: (r): ApiServices => ({
          preload,
          lifecycle: r.resolve(API_TOKENS.Lifecycle),
          vmFiles: r.resolve(TOKENS.VmFiles),
          access: r.resolve(API_TOKENS.Access),
          storage: r.resolve(TOKENS.Storage),
          backups: r.resolve(API_TOKENS.Backups),
        }),
      });
      await prepareAdminServices(Daemon.qrexecServiceDir(options), options.socketPath, METHODS);
      const server = c.resolve(AdminServer);
      await server.listen(options.socketPath);
      if (options.socketAccess) await applySocketAccess(options.socketPath, options.socketAccess, log);
      const servers = [server];
      if (options.internalSocketPath) {
        const internal = new AdminServer(
          new Dispatcher(app, c.resolve(API_TOKENS.Services), INTERNAL_METHODS, store),
          log,
        );
        await internal.listen(options.internalSocketPath);
        servers.push(internal);
      }
      const daemon = new Daemon(
        app,
        store,
        backend,
        c,
        servers,
        policyStore,
        policy,
        unlock,
        options,
        created,
        preload,
      );
      void daemon.connectBackend();
      log('info', `serving ${options.socketPath} (state ${stateDir}, backend ${backendName})`);
      return daemon;
    } catch (e) {
      unlock();
      throw e;
    }
  }

  private static qrexecServiceDir(options: DaemonOptions): string {
    return options.qrexecServiceDir ?? join(options.stateDir, 'qrexec-services');
  }

  /** The qrexec daemons of dom0, started with the first transport a backend brings. */
  private qrexec(transport: VchanTransport): QrexecHost {
    this.qrexecHost ??= new QrexecHost({
      app: this.app,
      transport,
      policy: this.policy,
      serviceDirs: [Daemon.qrexecServiceDir(this.options)],
      socketDir: join(this.options.stateDir, 'run'),
      policyAgentSocket: policyAgentSocket(this.options.stateDir),
      startDomain: (name) => this.lifecycle.start(this.app.domains.get(name)),
      disposables: new DisposableCalls(this.container.resolve(API_TOKENS.Dispatcher), this.options.log),
      log: this.options.log,
    });
    return this.qrexecHost;
  }

  private qubesdb(transport: VchanTransport): QubesDbHost {
    this.qubesdbHost ??= new QubesDbHost({
      app: this.app,
      transport,
      socketDir: join(this.options.stateDir, 'run'),
      log: this.options.log,
    });
    return this.qubesdbHost;
  }

  private async connectBackend(): Promise<void> {
    const { log } = this.options;
    try {
      const { vmm: opened, vchan } = this.created;
      await opened.open();
      if (this.stopping) {
        await opened.close();
        return;
      }
      const vmm = vchan
        ? withQrexecStart(withQubesDbStart(opened, this.qubesdb(vchan)), this.qrexec(vchan))
        : opened;
      this.backend.connected(vmm);
      await this.lifecycle.syncStates(vmm);
      log('info', `backend ${this.backend.name} connected`);
      void this.followEvents(vmm);
      // Preloads need running domains' states, so they start once the backend answers; a failure
      // there leaves the backend connected.
      void this.preload
        .start()
        .catch((e: unknown) => log('warn', `preloaded disposables not restored: ${String(e)}`));
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      this.backend.unavailable(reason);
      log('warn', `backend ${this.backend.name} unavailable: ${reason}`);
      if (!this.stopping) {
        this.reconnectTimer = setTimeout(
          () => void this.connectBackend(),
          this.options.reconnectMs ?? 10_000,
        );
        this.reconnectTimer.unref();
      }
    }
  }

  private async followEvents(vmm: Vmm): Promise<void> {
    try {
      for await (const event of vmm.events()) await this.lifecycle.onVmmEvent(event);
    } catch (e) {
      this.options.log('warn', `backend event stream ended: ${String(e)}`);
    }
    if (!this.stopping && this.backend.current === vmm) {
      this.backend.unavailable('connection to the hypervisor was lost');
      void this.connectBackend();
    }
  }

  /** Stops serving, lets calls in progress finish, saves, and releases the state dir. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    // A backup can run for hours; the servers below wait for calls in progress.
    (this.container.resolve(API_TOKENS.Backups) as BackupService).cancelAll();
    await this.preload.stop();
    await this.qrexecHost?.close();
    await this.qubesdbHost?.close();
    await Promise.all(this.servers.map((s) => s.close()));
    this.policyStore?.close();
    await this.store.save();
    const vmm = this.backend.current;
    this.backend.unavailable('daemon stopped');
    await vmm?.close().catch(() => undefined);
    this.unlock();
  }
}
