import { EventEmitter } from 'node:events';
import { RpcConnection } from './connection.js';
import { ConnectionClosedError } from './errors.js';
import { DomainEventRegistry, type LifecycleSubscription } from './events.js';
import type { KeepaliveOptions } from './keepalive.js';
import {
  ConnectFlags,
  DriverFeature,
  HostApi,
  authenticate,
  openConnection,
  supportsFeature,
} from './procedures/connect.js';
import { DomainApi } from './procedures/domain.js';
import type { Domain } from './procedures/handles.js';
import { Proc } from './procedures/numbers.js';
import { PoolApi, VolumeApi } from './procedures/storage.js';
import { resolveSocket, type DaemonMode } from './sockets.js';

export interface LibvirtOptions {
  /** Default `qemu:///system`. */
  uri?: string;
  /** Connect to this socket instead of the one the URI maps to. */
  socketPath?: string;
  readOnly?: boolean;
  /** How to pick the daemon socket when `socketPath` is not given. */
  mode?: DaemonMode;
  /** Keepalive timing, or `false` to rely on the socket alone. */
  keepalive?: KeepaliveOptions | false;
}

export interface LibvirtEvents {
  connect: [];
  /** The connection ended; `error` says why, and is undefined after `close()`. */
  close: [error: ConnectionClosedError | undefined];
}

/**
 * A client of one libvirt daemon over its UNIX socket. Calls go through the procedure groups
 * (`host`, `domains`, `pools`, `volumes`); they may run concurrently. After 'close', `connect()`
 * may be called again: the groups and event subscriptions carry over to the new connection.
 */
export class Libvirt extends EventEmitter<LibvirtEvents> {
  readonly host = new HostApi(() => this.rpc());
  readonly domains = new DomainApi(() => this.rpc());
  readonly pools = new PoolApi(() => this.rpc());
  readonly volumes = new VolumeApi(() => this.rpc());
  private readonly events = new DomainEventRegistry();
  private conn: RpcConnection | undefined;
  private connecting: Promise<void> | undefined;

  constructor(private readonly options: LibvirtOptions = {}) {
    super();
  }

  get uri(): string {
    return this.options.uri ?? 'qemu:///system';
  }

  get isConnected(): boolean {
    return this.conn !== undefined && !this.conn.isClosed;
  }

  /** Opens the socket, authenticates, opens the URI and re-registers event subscriptions. */
  connect(): Promise<void> {
    if (this.isConnected) return Promise.resolve();
    this.connecting ??= this.doConnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    const target = resolveSocket(this.uri, { readOnly: this.options.readOnly, mode: this.options.mode });
    const rpc = await RpcConnection.open(this.options.socketPath ?? target.path, {
      keepalive: this.options.keepalive,
    });
    try {
      await authenticate(rpc);
      await openConnection(rpc, target.uri, this.options.readOnly ? ConnectFlags.READ_ONLY : 0);
      // Lets the daemon ping us too, so it drops this client if our process hangs.
      if (this.options.keepalive !== false) await supportsFeature(rpc, DriverFeature.PROGRAM_KEEPALIVE);
      await this.events.attach(rpc);
    } catch (err) {
      rpc.destroy(err as Error);
      throw err;
    }
    this.conn = rpc;
    rpc.once('close', (err) => {
      if (this.conn === rpc) this.emit('close', err);
    });
    this.emit('connect');
  }

  /** Closes the libvirt connection (CONNECT_CLOSE) and the socket. Calls still pending are rejected. */
  async close(): Promise<void> {
    const rpc = this.conn;
    if (!rpc || rpc.isClosed) return;
    try {
      await rpc.call(Proc.CONNECT_CLOSE);
    } catch (err) {
      if (!(err instanceof ConnectionClosedError)) throw err;
    } finally {
      await rpc.close();
    }
  }

  /** Lifecycle events of one domain, or of every domain when `domain` is omitted. */
  async subscribeLifecycle(domain?: Domain): Promise<LifecycleSubscription> {
    return this.events.subscribeLifecycle(this.rpc(), domain ?? null);
  }

  private rpc(): RpcConnection {
    const rpc = this.conn;
    if (!rpc || rpc.isClosed)
      throw new ConnectionClosedError('not connected to libvirt; call connect() first');
    return rpc;
  }
}
