import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Config } from '../config.js';
import { BackupError, usageError } from '../errors.js';
import { containerName, DockerEngine } from '../sources/docker/engine.js';
import { type RestoreOptions, type RestoreResult, restoreBackup } from './restore.js';
import { type ContainerDowntime, containersToStop, volumeBackupDir } from './volumes.js';

const readableDir = (dir: string) =>
  fsp.access(dir, fsConstants.R_OK | fsConstants.W_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );

export interface VolumeRestoreResult extends RestoreResult {
  volume: string;
  containers: ContainerDowntime[];
}

/**
 * `restore ID --volume NAME`: the volume's own backup directory, restored into its mountpoint the way the
 * storage directory is (unpacked beside, checked, swapped in, the old contents kept as
 * `_data.pre-restore-ID`), with its stop-labelled containers stopped first and started again whatever
 * happens. With `target`, restored beside into TARGET/NAME without asking Docker anything.
 */
export async function restoreVolume(
  cfg: Config,
  name: string,
  ref: string,
  opts: RestoreOptions & { dockerHost?: string; stopTimeoutS?: number },
): Promise<VolumeRestoreResult> {
  const backupDir = volumeBackupDir(cfg.backupDir, name);
  if (opts.target) {
    const r = await restoreBackup({ ...cfg, backupDir, storagePath: path.join(backupDir, name) }, ref, opts);
    return { ...r, volume: name, containers: [] };
  }
  const docker = new DockerEngine({ host: opts.dockerHost });
  const vol = await docker.inspectVolume(name);
  if (!vol) throw usageError(`no Docker volume named '${name}'`, `create it first (docker volume create ${name}), or restore beside it with --target DIR`);
  if (docker.remote || !(await readableDir(vol.Mountpoint)))
    throw usageError(
      `volume ${name}: its mountpoint ${vol.Mountpoint} cannot be reached from here (${docker.remote ? 'a remote Docker daemon' : 'a rootless daemon, or no permission'}); a volume is restored in place only on its Docker host`,
      `restore beside it with --target DIR, then copy it in with the containers stopped: docker run --rm -v ${name}:/v -v DIR/${name}:/r:ro IMAGE sh -c 'cp -a /r/. /v/'`,
    );
  const { stop } = await containersToStop(docker, { name, mountpoint: vol.Mountpoint, project: vol.Labels?.['com.docker.compose.project'] });
  const containers: ContainerDowntime[] = [];
  const stopped: { id: string; rec: ContainerDowntime; at: number }[] = [];
  let result: RestoreResult;
  try {
    // stopped only once the restore is verified and confirmed: a refused restore touches no container
    result = await restoreBackup({ ...cfg, backupDir, storagePath: vol.Mountpoint }, ref, {
      ...opts,
      beforeChange: async (plan) => {
        for (const c of stop) {
          const rec: ContainerDowntime = { name: containerName(c), id: c.Id.slice(0, 12), stopped: false };
          containers.push(rec);
          const at = Date.now();
          if (!(await docker.stopGracefully(c.Id, opts.stopTimeoutS ?? 30)))
            throw new BackupError('FAILED', `container ${rec.name} did not stop within ${opts.stopTimeoutS ?? 30} s: volume ${name} was not restored`, {
              hint: 'stop it by hand (docker stop) and restore again',
            });
          rec.stopped = true;
          stopped.push({ id: c.Id, rec, at });
        }
        await opts.beforeChange?.(plan);
      },
    });
  } finally {
    for (const s of stopped) {
      try {
        await docker.start(s.id);
        s.rec.restarted = true;
      } catch (err) {
        s.rec.restarted = false;
        s.rec.error = (err as Error).message;
      }
      s.rec.downtimeMs = Date.now() - s.at;
    }
  }
  const failed = containers.filter((c) => c.restarted === false);
  if (failed.length)
    throw new BackupError('FAILED', `volume ${name} is restored, but container ${failed.map((c) => `${c.name} (${c.error})`).join(', ')} did not start again`, {
      hint: `start it by hand: docker start ${failed.map((c) => c.name).join(' ')}`,
    });
  return { ...result, volume: name, containers };
}
