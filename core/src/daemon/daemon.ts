import 'reflect-metadata';

import { mkdir } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join } from 'node:path';

import { container as rootContainer, instanceCachingFactory } from 'tsyringe';
import type { DependencyContainer, InjectionToken } from 'tsyringe';

import { Dispatcher } from '../api/dispatcher.js';
import { INTERNAL_METHODS } from '../api/internal-method-table.js';
import { METHODS } from '../api/method-table.js';
import { AdminServer } from '../api/server.js';
import { removeBackupLeftovers } from '../backup/leftovers.js';
import { BackupService } from '../backup/service.js';
import type { Log } from '../log.js';
import type { ApiServices } from '../api/services.js';
import {
  EventsLostError,
  loadBackend,
  type Backend as CreatedBackend,
  type VchanTransport,
  type Vmm,
  type VmmEvent,
} from '@odyssey/hal';
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
import { SystemClock } from '../clock.js';
import { DAEMON_TOKENS } from './daemon-tokens.js';
import { PolicyAccess } from './access.js';
import { AwaitQrexec, HOST_TOKENS, ServeQubesDb } from './after-start.js';
import { AppPolicy, policyLoadLog } from './app-policy.js';
import { DisposableCalls } from './disposable-calls.js';
import { installDom0ServiceFlags } from './dom0-service-flags.js';
import { PreloadPool } from '../lifecycle/preload-pool.js';
import { QrexecHost } from './qrexec-host.js';
import { QubesDbHost } from './qubesdb-host.js';
import { applySocketAccess } from './socket-access.js';
import type { SocketAccess } from './socket-access.js';
import { prepareAdminServices, prepareSocketService } from './qrexec-services.js';
import { featuresRequestMethods } from '../api/methods/features-request.js';
import { notifyUpdatesMethods } from '../api/methods/notify-updates.js';
import { VmDirFiles } from './vm-files.js';

export interface DaemonOptions {
  readonly socketPath: string;
  /** The internal socket (upstream's qubesd.internal.sock): system info for the policy tools. */
  readonly internalSocketPath?: string;
  /** qrexec policy directories (policy.d); without them callers other than dom0 are not filtered. */
  readonly policyDirs?: readonly string[];
  readonly legacyPolicyDir?: string;
  /** Unless the container registers TOKENS.StateDir. */
  readonly stateDir?: string;
  /**
   * A backend package name or path (see @odyssey/hal's loadBackend), or a Vmm instance; unless the
   * container registers DAEMON_TOKENS.Backend.
   */
  readonly backend?: string | Vmm;
  /** With a Vmm instance: its dom0 vchan transport, to run qrexec (a package brings its own). */
  readonly vchan?: VchanTransport;
  /**
   * dom0's qrexec service directory, prepared at start with a link per admin
   * method to the admin socket (default `<state dir>/qrexec-services`).
   */
  readonly qrexecServiceDir?: string;
  /** Where admin.backup.* finds `<profile>.conf` (default `<state dir>/backup-profiles`). */
  readonly backupProfileDir?: string;
  /**
   * Where dom0's own `service.*` features become flag files, as upstream's /var/run/qubes-service
   * (the package's config sets that); unset, none are written.
   */
  readonly dom0ServicesDir?: string;
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
  /** Where the daemon's container is made, as a child: what it registers replaces the defaults (tests). */
  readonly container?: DependencyContainer;
}

type SettledOptions = DaemonOptions & { readonly stateDir: string };

/** Disposables are made by an API handler; the log learns of each from the app's own event. */
function logDisposables(app: App, log: Log): void {
  app.events.subscribe((event) => {
    if (event.name !== 'domain-add') return;
    const vm = app.domains.byName(event.args.vm);
    if (vm?.klass !== 'DispVM') return;
    log('info', `disposable ${vm.name} created (template ${vm.template?.name ?? 'none'})`);
  });
}

/**
 * A qube whose firewall.xml cannot be loaded keeps no rules (Vm.firewall refuses them), so the
 * daemon serves the rest and only what touches that firewall fails, until Set replaces the file.
 */
async function loadFirewall(vm: Vm, vmFiles: VmDirFiles, log: Log): Promise<void> {
  vm.firewallState = await vmFiles.loadFirewall(vm);
  if ('unloadable' in vm.firewallState) {
    log(
      'warn',
      `${vm.name}: firewall.xml could not be loaded, its network is refused: ${vm.firewallState.unloadable}`,
    );
  }
}

/**
 * The composition root: loads the state dir, wires the services in one
 * container, serves the admin socket, and keeps trying to reach the backend
 * (configuration calls never wait for it).
 */
export class Daemon {
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  private constructor(
    readonly app: App,
    readonly store: StateStore,
    readonly backend: Backend,
    readonly container: DependencyContainer,
    private readonly servers: readonly AdminServer[],
    private readonly policyStore: PolicyStore | null,
    private readonly unlock: () => void,
    private readonly options: SettledOptions,
    private readonly created: CreatedBackend,
    /** dom0's qrexec daemons and QubesDB, on the backend's vchan transport; null without one. */
    private readonly hosts: { readonly qrexec: QrexecHost; readonly qubesdb: QubesDbHost } | null,
    private readonly preload: PreloadPool,
  ) {}

  get lifecycle(): DomainManager {
    return this.container.resolve(DomainManager);
  }

  /**
   * Starts the daemon. What `options.container` registers (TOKENS.StateDir, TOKENS.Clock,
   * DAEMON_TOKENS.Backend, ...) is used instead of what the options or the defaults give.
   */
  static async start(daemonOptions: DaemonOptions): Promise<Daemon> {
    const c = (daemonOptions.container ?? rootContainer).createChildContainer();
    const given = <T>(token: InjectionToken<T>): T | undefined =>
      c.isRegistered(token, true) ? c.resolve(token) : undefined;
    const stateDir = given(TOKENS.StateDir) ?? daemonOptions.stateDir;
    if (stateDir === undefined)
      throw new Error('no state dir: give options.stateDir or register TOKENS.StateDir');
    const options: SettledOptions = { ...daemonOptions, stateDir };
    const { log } = options;
    await mkdir(stateDir, { recursive: true, mode: 0o770 });
    const unlock = lockStateDir(stateDir);
    try {
      // A backend that cannot be loaded or created is a configuration error: refuse to start.
      const created = given(DAEMON_TOKENS.Backend) ?? (await Daemon.createBackend(options));
      Daemon.register(c, options, created);
      const registry = c.resolve(PoolRegistry);
      const storage = c.resolve(TOKENS.Storage);
      const app = c.resolve(TOKENS.App);
      const store = c.resolve(StateStore);
      const loaded = await store.load((msg) => log('warn', msg));
      for (const attrs of loaded?.pools ?? []) registry.loadPool(attrs);
      if (registry.poolNames().length === 0) await registry.initDefaultPools(stateDir);
      for (const [vm, attrs] of loaded?.volumes ?? []) storage.load(vm, attrs);
      if (!loaded) {
        app.createAdminVm(app.labels.get('black'));
        // What upstream's first init sets explicitly.
        app.props.init('default_pool_kernel', 'linux-kernel');
        await store.save();
        // qubes.xml exists from the first start on, as upstream's qubesd creates it.
        await store.flush();
      }
      logDisposables(app, log);
      if (options.dom0ServicesDir) installDom0ServiceFlags(app, options.dom0ServicesDir, log);
      const vmFiles = c.resolve(VmDirFiles);
      for (const vm of app.domains.list()) await loadFirewall(vm, vmFiles, log);
      // A backup killed with the daemon leaves its work files and partial archive behind.
      await removeBackupLeftovers(join(stateDir, 'backup-work'));
      const policyStore = options.policyDirs
        ? new PolicyStore({
            dirs: [...options.policyDirs],
            legacyDir: options.legacyPolicyDir,
            onReload: policyLoadLog(log),
          })
        : null;
      const policy = policyStore ? new AppPolicy(policyStore, app) : null;
      c.register(API_TOKENS.Access, {
        useFactory: instanceCachingFactory(() => new PolicyAccess(policy, options.strictManagement ?? false)),
      });
      if (created.vchan) Daemon.registerHosts(c, created.vchan, policy, options);
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
      if (created.vchan) servers.push(await Daemon.serveMisc(c, app, store, options));
      const daemon = new Daemon(
        app,
        store,
        c.resolve(TOKENS.Backend),
        c,
        servers,
        policyStore,
        unlock,
        options,
        created,
        created.vchan
          ? { qrexec: c.resolve(HOST_TOKENS.Qrexec), qubesdb: c.resolve(HOST_TOKENS.QubesDb) }
          : null,
        c.resolve(PreloadPool),
      );
      void daemon.connectBackend();
      log('info', `serving ${options.socketPath} (state ${stateDir}, backend ${daemon.backend.name})`);
      return daemon;
    } catch (e) {
      unlock();
      throw e;
    }
  }

  /**
   * The misc socket (upstream's qubesd.misc.sock, here in the state dir's
   * runtime dir), linked as dom0's qubes.FeaturesRequest, qubes.NotifyTools
   * and qubes.NotifyUpdates services: the feature requests are read from
   * dom0's copy of the caller's QubesDB.
   */
  private static async serveMisc(
    c: DependencyContainer,
    app: App,
    store: StateStore,
    options: SettledOptions,
  ): Promise<AdminServer> {
    const path = join(options.stateDir, 'run', 'qubesd.misc.sock');
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    const qubesdb = c.resolve(HOST_TOKENS.QubesDb);
    const methods = [
      ...featuresRequestMethods((vm) => qubesdb.database(vm.name)),
      ...notifyUpdatesMethods(c.resolve(TOKENS.Clock)),
    ];
    const misc = new AdminServer(
      new Dispatcher(app, c.resolve(API_TOKENS.Services), methods, store),
      options.log,
    );
    await misc.listen(path);
    for (const method of methods)
      await prepareSocketService(Daemon.qrexecServiceDir(options), method.name, path);
    return misc;
  }

  private static async createBackend(options: SettledOptions): Promise<CreatedBackend> {
    const { backend } = options;
    if (backend === undefined)
      throw new Error('no backend: give options.backend or register DAEMON_TOKENS.Backend');
    if (typeof backend !== 'string')
      return { vmm: backend, ...(options.vchan ? { vchan: options.vchan } : {}) };
    return loadBackend(backend, { runtimeDir: join(options.stateDir, 'run'), log: options.log });
  }

  /** The daemon's parts, each built by the container when first resolved; what is given already stays. */
  private static register(c: DependencyContainer, options: SettledOptions, created: CreatedBackend): void {
    const { stateDir } = options;
    const unlessGiven = <T>(token: InjectionToken<T>, register: () => void): void => {
      if (!c.isRegistered(token, true)) register();
    };
    unlessGiven(TOKENS.StateDir, () => c.register(TOKENS.StateDir, { useValue: stateDir }));
    unlessGiven(TOKENS.Clock, () => c.registerSingleton(TOKENS.Clock, SystemClock));
    unlessGiven(TOKENS.Log, () => c.register(TOKENS.Log, { useValue: options.log }));
    unlessGiven(DAEMON_TOKENS.Host, () =>
      c.register(DAEMON_TOKENS.Host, {
        useValue: options.host ?? {
          memoryMiB: Math.floor(totalmem() / 1048576),
          cpus: availableParallelism(),
        },
      }),
    );
    c.registerSingleton(PoolRegistry);
    c.register(TOKENS.Storage, {
      useFactory: instanceCachingFactory((r) => new VmStorage(r.resolve(PoolRegistry), stateDir)),
    });
    c.register(TOKENS.App, {
      useFactory: instanceCachingFactory(
        (r) => new App(stateDir, r.resolve(DAEMON_TOKENS.Host), r.resolve(TOKENS.Storage)),
      ),
    });
    c.register(StateStore, {
      useFactory: instanceCachingFactory((r) => {
        const registry = r.resolve(PoolRegistry);
        const storage = r.resolve(TOKENS.Storage);
        return new StateStore(join(stateDir, 'qubes.xml'), r.resolve(TOKENS.App), {
          pools: () => registry.poolNames().map((n) => registry.poolXml(n)),
          volumes: (vm) => storage.xml(vm),
        });
      }),
    });
    c.register(TOKENS.Saver, { useToken: StateStore });
    c.registerSingleton(VmDirFiles);
    c.register(TOKENS.VmFiles, { useToken: VmDirFiles });
    c.register(TOKENS.Backend, {
      useFactory: instanceCachingFactory(() => new Backend(created.vmm.capabilities().name)),
    });
    c.register(API_TOKENS.Methods, { useValue: METHODS });
    c.register(BackupService, {
      useFactory: instanceCachingFactory((r) => {
        const store = r.resolve(StateStore);
        return new BackupService({
          app: r.resolve(TOKENS.App),
          storage: r.resolve(TOKENS.Storage),
          xml: store.writer,
          saver: store,
          profileDir: options.backupProfileDir ?? join(stateDir, 'backup-profiles'),
          workRoot: join(stateDir, 'backup-work'),
        });
      }),
    });
    c.register(API_TOKENS.Backups, { useToken: BackupService });
    c.registerSingleton(DomainManager);
    c.register(API_TOKENS.Lifecycle, { useToken: DomainManager });
    c.registerSingleton(API_TOKENS.Dispatcher, Dispatcher);
    c.register(PreloadPool, {
      useFactory: instanceCachingFactory(
        (r) =>
          new PreloadPool({
            app: r.resolve(TOKENS.App),
            storage: r.resolve(TOKENS.Storage),
            vmFiles: r.resolve(TOKENS.VmFiles),
            saver: r.resolve(TOKENS.Saver),
            log: options.log,
            lifecycle: r.resolve(API_TOKENS.Lifecycle),
            // Resolved after registerHosts: the pool is first resolved when the admin server is.
            ...(r.isRegistered(HOST_TOKENS.Qrexec)
              ? {
                  runService: (vm: Vm, service: string) =>
                    r.resolve(HOST_TOKENS.Qrexec).serviceForStdio(vm, service),
                }
              : {}),
          }),
      ),
    });
    c.register(API_TOKENS.Services, {
      useFactory: (r): ApiServices => ({
        preload: r.resolve(PreloadPool),
        lifecycle: r.resolve(API_TOKENS.Lifecycle),
        vmFiles: r.resolve(TOKENS.VmFiles),
        access: r.resolve(API_TOKENS.Access),
        storage: r.resolve(TOKENS.Storage),
        backups: r.resolve(API_TOKENS.Backups),
      }),
    });
  }

  private static qrexecServiceDir(options: SettledOptions): string {
    return options.qrexecServiceDir ?? join(options.stateDir, 'qrexec-services');
  }

  /**
   * dom0's QubesDB and qrexec daemons on the backend's vchan transport, and the steps that make a
   * running domain started: its QubesDB served first (its daemon reads it while booting), then its
   * qrexec agent awaited. What a qrexec call asks of the daemon (start a domain, make a
   * disposable) is resolved when asked, as the lifecycle itself is built with these steps.
   */
  private static registerHosts(
    c: DependencyContainer,
    transport: VchanTransport,
    policy: AppPolicy | null,
    options: SettledOptions,
  ): void {
    const socketDir = join(options.stateDir, 'run');
    c.register(HOST_TOKENS.QubesDb, {
      useFactory: instanceCachingFactory(
        (r) => new QubesDbHost({ app: r.resolve(TOKENS.App), transport, socketDir, log: options.log }),
      ),
    });
    c.register(HOST_TOKENS.Qrexec, {
      useFactory: instanceCachingFactory((r) => {
        const app = r.resolve(TOKENS.App);
        const disposables = (): DisposableCalls =>
          new DisposableCalls(r.resolve(API_TOKENS.Dispatcher), options.log);
        return new QrexecHost({
          app,
          transport,
          policy,
          serviceDirs: [Daemon.qrexecServiceDir(options)],
          socketDir,
          policyAgentSocket: policyAgentSocket(options.stateDir),
          startDomain: (name) => r.resolve(API_TOKENS.Lifecycle).start(app.domains.get(name)),
          disposables: {
            create: (template, source) => disposables().create(template, source),
            destroy: (name) => disposables().destroy(name),
          },
          log: options.log,
        });
      }),
    });
    c.register(TOKENS.AfterStart, { useClass: ServeQubesDb });
    c.register(TOKENS.AfterStart, { useClass: AwaitQrexec });
  }

  private async connectBackend(): Promise<void> {
    const { log } = this.options;
    try {
      const { vmm } = this.created;
      await vmm.open();
      if (this.stopping) {
        await vmm.close();
        return;
      }
      this.backend.connected(vmm);
      // Subscribed before the states are read, so a change in between is not missed.
      const events = vmm.events();
      await this.lifecycle.syncStates(vmm);
      log('info', `backend ${this.backend.name} connected`);
      void this.followEvents(vmm, events);
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

  private async followEvents(vmm: Vmm, first: AsyncIterable<VmmEvent>): Promise<void> {
    let events = first;
    for (;;) {
      try {
        for await (const event of events) await this.lifecycle.onVmmEvent(event);
      } catch (e) {
        if (e instanceof EventsLostError && !this.stopping) {
          // We fell behind a flood of events, some were dropped: read every state again instead.
          this.options.log('warn', `backend events dropped, states read again: ${e.message}`);
          events = vmm.events();
          try {
            await this.lifecycle.syncStates(vmm);
            continue;
          } catch (err) {
            this.options.log('warn', `backend states could not be read again: ${String(err)}`);
            await events[Symbol.asyncIterator]().return?.();
          }
        } else this.options.log('warn', `backend event stream ended: ${String(e)}`);
      }
      break;
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
    this.container.resolve(BackupService).cancelAll();
    await this.preload.stop();
    await this.hosts?.qrexec.close();
    await this.hosts?.qubesdb.close();
    await Promise.all(this.servers.map((s) => s.close()));
    this.policyStore?.close();
    await this.store.close();
    const vmm = this.backend.current;
    this.backend.unavailable('daemon stopped');
    await vmm?.close().catch(() => undefined);
    this.unlock();
  }
}
