import type { Config } from '../config.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Recipient } from '../crypto/age-keys.js';
import { type CreateOptions, type CreateResult, type StorageRunOptions, runCreate } from './create.js';
import { type HookRun, type Hooks, runAround } from './hooks.js';
import type { ProgressEvent } from './progress.js';
import { type VolumeBackup, type VolumeSettings, backupVolumes } from './volumes.js';

/**
 * A whole `create` run as the CLI and `serve` both make it, between the hooks: the backup, then the
 * Docker volumes (file trees: a storage or full backup holds them too), or the volumes alone. The
 * caller holds the lock; rotation and uploads after it are the caller's.
 */
export interface CreateRunOptions {
  type: BackupType | 'volumes';
  hooks: Hooks;
  volumes?: VolumeSettings;
  storage?: StorageRunOptions;
  recipients?: Recipient[] | null;
  /** a page delta instead of a whole copy (create --incremental --type database) */
  database?: CreateOptions['database'];
  signal?: AbortSignal;
  onProgress?: (p: ProgressEvent) => void;
  /** each hook as it ends */
  onHook?: (run: HookRun) => void;
  /** a line worth telling (a container stopped, started again) */
  onEvent?: (line: string) => void;
}

export interface CreateRun {
  /** the backup (none for `volumes`) */
  result?: CreateResult;
  volumes?: VolumeBackup[];
  hooks: HookRun[];
  /** after hooks that failed: the backup is kept, the run is a failure (exit 1) */
  failedAfter: HookRun[];
}

export async function runCreateWithHooks(cfg: Config, o: CreateRunOptions): Promise<CreateRun> {
  let volumes: VolumeBackup[] | undefined;
  const volumeOptions = { signal: o.signal, onProgress: o.onProgress, onEvent: o.onEvent };
  const hooked = await runAround(
    {
      hooks: o.hooks,
      env: cfg.env,
      ctx: { operation: 'create', type: o.type, backupDir: cfg.backupDir },
      signal: o.signal,
      onRun: o.onHook,
      describe: (r: CreateResult | undefined) =>
        r
          ? { id: r.id, result: r.status, exitCode: r.ok ? 0 : 1, paths: r.backups.flatMap((b) => b.files) }
          : { id: (volumes ?? []).map((v) => `${v.volume}:${v.id}`).join(' '), paths: (volumes ?? []).flatMap((v) => v.passes.flatMap((p) => p.files)) },
    },
    async () => {
      if (o.type === 'volumes') {
        volumes = o.volumes ? await backupVolumes(cfg, o.volumes, volumeOptions) : [];
        return undefined;
      }
      const r = await runCreate(cfg, {
        type: o.type,
        signal: o.signal,
        storage: o.storage,
        recipients: o.recipients,
        database: o.database,
        onProgress: o.onProgress,
      });
      if (o.volumes && o.type !== 'database') volumes = await backupVolumes(cfg, o.volumes, { ...volumeOptions, storage: o.storage, recipients: o.recipients });
      return r;
    },
  );
  return { result: hooked.value, volumes, hooks: hooked.runs, failedAfter: hooked.failedAfter };
}

/** What backup.log records of the volumes of a run. */
export const volumeLog = (volumes: VolumeBackup[]) =>
  volumes.map((v) => ({
    volume: v.volume,
    id: v.id,
    backup_dir: v.backupDir,
    passes: v.passes.map((p) => p.id),
    containers: v.containers.map((c) => ({ name: c.name, stopped: c.stopped, downtime_ms: c.downtimeMs, restarted: c.restarted })),
  }));
