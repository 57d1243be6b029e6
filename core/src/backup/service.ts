import { tmpdir } from 'node:os';

import type { Saver } from '../persist/saver.js';
import type { Backups } from './backups.js';
import type { App } from '../model/app.js';
import {
  BackupAlreadyRunningError,
  BackupCancelledError,
  QubesException,
  QubesNotImplementedError,
} from '../model/errors.js';
import type { VmStorage } from '../storage/vm-storage.js';
import { runBackup } from './job.js';
import type { BackupXmlSource } from './job.js';
import { planBackup } from './plan.js';
import { profileVms, readProfile } from './profile.js';
import type { BackupProfile } from './profile.js';
import { pyFloat } from './py-format.js';
import type { ScryptParams } from './scrypt-file.js';
import { backupSummary } from './summary.js';

export interface BackupServiceOptions {
  readonly app: App;
  readonly storage: VmStorage;
  /** The backup's qubes.xml comes from the same serialiser as the real one. */
  readonly xml: BackupXmlSource;
  /** Saves backup_timestamp after a successful backup. */
  readonly saver: Saver;
  /** Where `<profile>.conf` files live (upstream: /etc/qubes/backup). */
  readonly profileDir: string;
  /** Key derivation cost of every encrypted file (tests use a cheap one). */
  readonly scrypt?: ScryptParams;
  readonly chunkSize?: number;
  /** Least time between two backup-progress events; upstream: 1 s. */
  readonly progressIntervalMs?: number;
  /** Where jobs keep their work files; default: the OS temp dir. */
  readonly workRoot?: string;
}

/**
 * About what `scrypt enc` picks for itself on a small machine (256 MiB,
 * well under a second), since each backup derives one key per 100 MiB.
 */
const DEFAULT_SCRYPT: ScryptParams = { logN: 18, r: 8, p: 1 };
const CHUNK_SIZE = 100 * 1024 * 1024;

/** admin.backup.*: profiles, the running backups by profile, and the summary. */
export class BackupService implements Backups {
  private readonly running = new Map<string, AbortController>();

  constructor(private readonly opts: BackupServiceOptions) {}

  async info(profileId: string): Promise<string> {
    const { app, storage, profileDir } = this.opts;
    const profile = await readProfile(app, profileDir, profileId);
    return backupSummary(app, await planBackup(profileVms(app, profile), storage));
  }

  async execute(profileId: string): Promise<void> {
    const { app, storage, profileDir } = this.opts;
    const profile = await readProfile(app, profileDir, profileId);
    const passphrase = this.passphrase(profile);
    const plan = await planBackup(profileVms(app, profile), storage);
    if (this.running.has(profileId)) throw new BackupAlreadyRunningError();
    if (!profile.destinationVm.isAdminVm) {
      throw new QubesNotImplementedError(
        `Backup to a qube (destination_vm ${profile.destinationVm.name}) is not supported yet: ` +
          'odysseyd cannot run qubes.Backup in a qube; use destination_vm: dom0',
      );
    }
    const controller = new AbortController();
    this.running.set(profileId, controller);
    let lastProgress = Date.now();
    const interval = this.opts.progressIntervalMs ?? 1000;
    try {
      await runBackup({
        app,
        plan,
        passphrase,
        compression: profile.compression,
        destinationPath: profile.destinationPath,
        workRoot: this.opts.workRoot ?? tmpdir(),
        xml: this.opts.xml,
        scrypt: this.opts.scrypt ?? DEFAULT_SCRYPT,
        chunkSize: this.opts.chunkSize ?? CHUNK_SIZE,
        signal: controller.signal,
        onProgress: (percent) => {
          if (Date.now() - lastProgress < interval) return;
          lastProgress = Date.now();
          app.events.fire(null, 'backup-progress', { backup_profile: profileId, progress: pyFloat(percent) });
        },
      });
    } catch (e) {
      if (controller.signal.aborted) throw new BackupCancelledError();
      throw e;
    } finally {
      this.running.delete(profileId);
    }
    const now = Math.floor(Date.now() / 1000);
    const live = new Set(app.domains.list());
    for (const { vm } of plan) if (live.has(vm)) vm.props.set('backup_timestamp', now);
    await this.opts.saver.save();
  }

  cancel(profileId: string): void {
    const controller = this.running.get(profileId);
    if (!controller) throw new QubesException('Backup operation not running');
    controller.abort();
  }

  /** Stops every running backup (daemon shutdown: their callers get BackupCancelledError). */
  cancelAll(): void {
    for (const controller of this.running.values()) controller.abort();
  }

  private passphrase(profile: BackupProfile): Buffer {
    const source = profile.passphrase;
    if (source === null) {
      throw new QubesException(
        'Invalid backup profile - you need to specify passphrase_text or passphrase_vm',
      );
    }
    if ('text' in source) return Buffer.from(source.text, 'utf8');
    if (!this.opts.app.domains.list().some((vm) => vm.name === source.vm)) {
      throw new QubesException('Invalid backup profile - invalid passphrase_vm');
    }
    throw new QubesNotImplementedError(
      `passphrase_vm is not supported yet: odysseyd cannot call qubes.BackupPassphrase in ${source.vm}; ` +
        'use passphrase_text',
    );
  }
}
