import type { CreateResult } from '../ops/create.js';
import type { HookRun } from '../ops/hooks.js';
import type { VolumeBackup } from '../ops/volumes.js';
import type { RotateResult } from '../ops/rotate.js';

/** What `create` adds to the backup it made: volumes, hooks, the rotation and uploads run after it, when they ran. */
export interface CreateExtras {
  volumes?: VolumeBackup[];
  hooks?: HookRun[];
  rotation?: RotateResult;
  sync?: { remote: string; ok: boolean; uploaded?: number; error?: string }[];
}

/** The document of `create --json` and of a finished `POST /backups/create` job. */
export function createDocument(result: CreateResult, extras: CreateExtras = {}): unknown {
  return { ...result, volumes: extras.volumes, rotation: extras.rotation, sync: extras.sync, hooks: extras.hooks };
}

/** The document of `create --type volumes --json` and of such a `POST /backups/create` job. */
export function volumesDocument(
  volumes: VolumeBackup[],
  hooks: HookRun[],
  failedAfter: HookRun[],
  durationMs: number,
): { sizeBytes: number } & Record<string, unknown> {
  return {
    ok: failedAfter.length === 0,
    type: 'volumes',
    volumes,
    sizeBytes: volumes.reduce((s, v) => s + v.passes.reduce((a, b) => a + b.sizeBytes, 0), 0),
    durationMs,
    hooks: hooks.length ? hooks : undefined,
  };
}
