/** admin.backup.*: profiles are read per call; a profile runs at most once at a time. */
export interface Backups {
  /** Resolves when the archive is written; BackupCancelledError if Cancel stopped it. */
  execute(profile: string): Promise<void>;
  cancel(profile: string): void;
  /** The summary table of what the profile would back up. */
  info(profile: string): Promise<string>;
}
