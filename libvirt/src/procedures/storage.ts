import { DownloadStream, UploadStream } from '../stream.js';
import { Proc } from './numbers.js';
import {
  readList,
  readPool,
  readString,
  readVol,
  writePool,
  writeUuid,
  writeVol,
  type StoragePool,
  type StorageVol,
} from './handles.js';
import { call, type RpcSource } from './rpc.js';
import type { XdrWriter } from '../xdr.js';

/** virStoragePoolState. */
export const PoolState = { INACTIVE: 0, BUILDING: 1, RUNNING: 2, DEGRADED: 3, INACCESSIBLE: 4 } as const;
/** virStorageVolType. */
export const VolType = { FILE: 0, BLOCK: 1, DIR: 2, NETWORK: 3, NETDIR: 4, PLOOP: 5 } as const;
/** virConnectListAllStoragePoolsFlags (the common ones). */
export const ListPoolsFlags = {
  INACTIVE: 1,
  ACTIVE: 2,
  PERSISTENT: 4,
  TRANSIENT: 8,
  AUTOSTART: 16,
  DIR: 64,
} as const;
/** virStoragePoolBuildFlags. */
export const PoolBuildFlags = { REPAIR: 1, RESIZE: 2, NO_OVERWRITE: 4, OVERWRITE: 8 } as const;
/** virStoragePoolCreateFlags. */
export const PoolCreateFlags = {
  WITH_BUILD: 1,
  WITH_BUILD_OVERWRITE: 2,
  WITH_BUILD_NO_OVERWRITE: 4,
} as const;
/** virStorageVolCreateFlags. */
export const VolCreateFlags = { PREALLOC_METADATA: 1, REFLINK: 2, VALIDATE: 4 } as const;
/** virStorageVolDeleteFlags. */
export const VolDeleteFlags = { ZEROED: 1, WITH_SNAPSHOTS: 2 } as const;

export interface PoolInfo {
  state: number;
  /** Bytes. */
  capacity: bigint;
  allocation: bigint;
  available: bigint;
}

export interface VolInfo {
  type: number;
  /** Bytes the guest sees. */
  capacity: bigint;
  /** Bytes used on the host. */
  allocation: bigint;
}

export interface TransferRange {
  /** Byte offset into the volume. */
  offset?: bigint | number;
  /** Bytes to transfer; 0 means up to the end. */
  length?: bigint | number;
}

/** Storage pool calls. */
export class PoolApi {
  constructor(private readonly rpc: RpcSource) {}

  lookupByName(name: string): Promise<StoragePool> {
    return call(this.rpc, Proc.STORAGE_POOL_LOOKUP_BY_NAME, (w) => w.string(name), readPool);
  }

  lookupByUuid(uuid: string): Promise<StoragePool> {
    return call(this.rpc, Proc.STORAGE_POOL_LOOKUP_BY_UUID, (w) => writeUuid(w, uuid), readPool);
  }

  listAll(flags = 0): Promise<StoragePool[]> {
    return call(
      this.rpc,
      Proc.CONNECT_LIST_ALL_STORAGE_POOLS,
      (w) => {
        w.int(1);
        w.uint(flags);
      },
      (r) => readList(r, readPool),
    );
  }

  defineXML(xml: string, flags = 0): Promise<StoragePool> {
    return call(
      this.rpc,
      Proc.STORAGE_POOL_DEFINE_XML,
      (w) => {
        w.string(xml);
        w.uint(flags);
      },
      readPool,
    );
  }

  /** Makes the pool's backing (for a dir pool, the directory). */
  build(pool: StoragePool, flags = 0): Promise<void> {
    return this.poolFlags(Proc.STORAGE_POOL_BUILD, pool, flags);
  }

  /** Starts (activates) a defined pool. */
  create(pool: StoragePool, flags = 0): Promise<void> {
    return this.poolFlags(Proc.STORAGE_POOL_CREATE, pool, flags);
  }

  /** Deactivates the pool; its volumes stay on disk. */
  destroy(pool: StoragePool): Promise<void> {
    return call(this.rpc, Proc.STORAGE_POOL_DESTROY, (w) => writePool(w, pool));
  }

  /** Removes the pool's backing (the inverse of `build`). */
  delete(pool: StoragePool, flags = 0): Promise<void> {
    return this.poolFlags(Proc.STORAGE_POOL_DELETE, pool, flags);
  }

  undefine(pool: StoragePool): Promise<void> {
    return call(this.rpc, Proc.STORAGE_POOL_UNDEFINE, (w) => writePool(w, pool));
  }

  /** Rescans the backing for volumes created behind libvirt's back. */
  refresh(pool: StoragePool): Promise<void> {
    return this.poolFlags(Proc.STORAGE_POOL_REFRESH, pool, 0);
  }

  getInfo(pool: StoragePool): Promise<PoolInfo> {
    return call(
      this.rpc,
      Proc.STORAGE_POOL_GET_INFO,
      (w) => writePool(w, pool),
      (r) => ({ state: r.uint(), capacity: r.uhyper(), allocation: r.uhyper(), available: r.uhyper() }),
    );
  }

  getXMLDesc(pool: StoragePool, flags = 0): Promise<string> {
    return call(
      this.rpc,
      Proc.STORAGE_POOL_GET_XML_DESC,
      (w) => {
        writePool(w, pool);
        w.uint(flags);
      },
      readString,
    );
  }

  listVolumes(pool: StoragePool): Promise<StorageVol[]> {
    return call(
      this.rpc,
      Proc.STORAGE_POOL_LIST_ALL_VOLUMES,
      (w) => {
        writePool(w, pool);
        w.int(1);
        w.uint(0);
      },
      (r) => readList(r, readVol),
    );
  }

  private poolFlags(procedure: number, pool: StoragePool, flags: number): Promise<void> {
    return call(this.rpc, procedure, (w) => {
      writePool(w, pool);
      w.uint(flags);
    });
  }
}

/** Storage volume calls, including data transfer in both directions. */
export class VolumeApi {
  constructor(private readonly rpc: RpcSource) {}

  createXML(pool: StoragePool, xml: string, flags = 0): Promise<StorageVol> {
    return call(
      this.rpc,
      Proc.STORAGE_VOL_CREATE_XML,
      (w) => {
        writePool(w, pool);
        w.string(xml);
        w.uint(flags);
      },
      readVol,
    );
  }

  lookupByName(pool: StoragePool, name: string): Promise<StorageVol> {
    return call(
      this.rpc,
      Proc.STORAGE_VOL_LOOKUP_BY_NAME,
      (w) => {
        writePool(w, pool);
        w.string(name);
      },
      readVol,
    );
  }

  lookupByPath(path: string): Promise<StorageVol> {
    return call(this.rpc, Proc.STORAGE_VOL_LOOKUP_BY_PATH, (w) => w.string(path), readVol);
  }

  lookupByKey(key: string): Promise<StorageVol> {
    return call(this.rpc, Proc.STORAGE_VOL_LOOKUP_BY_KEY, (w) => w.string(key), readVol);
  }

  getInfo(vol: StorageVol): Promise<VolInfo> {
    return call(
      this.rpc,
      Proc.STORAGE_VOL_GET_INFO,
      (w) => writeVol(w, vol),
      (r) => ({ type: r.int(), capacity: r.uhyper(), allocation: r.uhyper() }),
    );
  }

  getPath(vol: StorageVol): Promise<string> {
    return call(this.rpc, Proc.STORAGE_VOL_GET_PATH, (w) => writeVol(w, vol), readString);
  }

  getXMLDesc(vol: StorageVol, flags = 0): Promise<string> {
    return call(
      this.rpc,
      Proc.STORAGE_VOL_GET_XML_DESC,
      (w) => {
        writeVol(w, vol);
        w.uint(flags);
      },
      readString,
    );
  }

  delete(vol: StorageVol, flags = 0): Promise<void> {
    return call(this.rpc, Proc.STORAGE_VOL_DELETE, (w) => {
      writeVol(w, vol);
      w.uint(flags);
    });
  }

  /**
   * Opens an upload into the volume. Pipe data into the returned stream; it emits 'finish' once
   * the daemon has confirmed the data, or 'error' with the daemon's error.
   */
  async upload(vol: StorageVol, range: TransferRange = {}): Promise<UploadStream> {
    const rpc = this.rpc();
    const stream = new UploadStream(rpc, Proc.STORAGE_VOL_UPLOAD);
    const { serial, reply } = rpc.callStream(
      Proc.STORAGE_VOL_UPLOAD,
      (w) => transferArgs(w, vol, range),
      stream,
    );
    await reply;
    stream.attach(serial);
    return stream;
  }

  /** Opens a download of the volume's contents as a readable stream. */
  async download(vol: StorageVol, range: TransferRange = {}): Promise<DownloadStream> {
    const rpc = this.rpc();
    const stream = new DownloadStream(rpc, Proc.STORAGE_VOL_DOWNLOAD);
    const { serial, reply } = rpc.callStream(
      Proc.STORAGE_VOL_DOWNLOAD,
      (w) => transferArgs(w, vol, range),
      stream,
    );
    stream.bind(serial);
    await reply;
    stream.accepted();
    return stream;
  }
}

function transferArgs(w: XdrWriter, vol: StorageVol, range: TransferRange): void {
  writeVol(w, vol);
  w.uhyper(range.offset ?? 0);
  w.uhyper(range.length ?? 0);
  w.uint(0);
}
