import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Config } from '../config.js';
import type { Recipient } from '../crypto/age-keys.js';
import { BackupError, usageError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { parseDuration } from '../schedule/duration.js';
import { type ContainerSummary, containerName, DockerEngine, LABEL_BACKUP, LABEL_PROJECT, LABEL_STOP } from '../sources/docker/engine.js';
import { type MirrorStats, syncMirror } from '../sources/docker/mirror.js';
import { type CreatedBackup, runCreate, type StorageRunOptions } from './create.js';
import { faultPoint } from './fault-point.js';
import type { ProgressFn } from './progress.js';

/**
 * Docker named volumes as file trees. Each volume is backed up exactly like the storage directory, into
 * a backup directory of its own, `<backup-dir>/volumes/<name>/` (its own incremental chain, manifests,
 * sidecars; verify, drill, sync, rotate and restore work on it with `--backup-dir`), read from its
 * mountpoint on the Docker host. Containers labelled `vertex-backup.stop=true` that use the volume are
 * stopped only for an incremental catch-up pass after a live pass, and always started again.
 */
export interface VolumeSettings {
  names: string[];
  /** every volume labelled vertex-backup.backup=true too */
  byLabel: boolean;
  host: string;
  stopTimeoutS: number;
  /**
   * How a volume is read: `mountpoint` (on the Docker host, the default when it is readable), `helper`
   * (through the daemon: an archive read of a never-started container that mounts the volume, applied to
   * a local mirror; for a remote or rootless daemon), `auto` (helper only when the mountpoint cannot be read).
   */
  read: 'auto' | 'mountpoint' | 'helper';
  /** VOLUME_HELPER_IMAGE: an image the daemon already has (no command runs in it; never pulled) */
  helperImage?: string;
  /** VOLUME_MIRROR_DIR: where helper-read volumes are mirrored (plaintext copies: keep it local and private) */
  mirrorDir?: string;
}

export const BY_LABEL = '@label';
export const volumeBackupDir = (backupDir: string, name: string) => path.join(backupDir, 'volumes', name);

/** VOLUMES=pgdata,functions (or @label), config `volumes`; undefined when no volume is configured. */
export function resolveVolumeSettings(cfg: Config, override?: string): VolumeSettings | undefined {
  const raw = override ?? cfg.env.VOLUMES ?? cfg.file.volumes;
  if (raw === undefined || raw === '') return undefined;
  let list: string[];
  if (typeof raw === 'string') list = raw.split(',');
  else if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) list = raw as string[];
  else throw usageError(`config key 'volumes' must be a list of volume names (or "${BY_LABEL}")`, 'like "volumes": ["pgdata", "functions"]');
  list = list.map((s) => s.trim()).filter(Boolean);
  for (const n of list) {
    if (n !== BY_LABEL && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n)) throw usageError(`'${n}' is not a Docker volume name (VOLUMES / config key 'volumes')`);
  }
  const timeout = cfg.env.DOCKER_STOP_TIMEOUT ?? '30s';
  const str = (k: string) => (typeof cfg.file[k] === 'string' ? (cfg.file[k] as string) : undefined);
  const read = cfg.env.VOLUME_READ || str('volumeRead') || 'auto';
  if (read !== 'auto' && read !== 'mountpoint' && read !== 'helper') throw usageError(`VOLUME_READ=${read}: use auto, mountpoint or helper`);
  return {
    names: list.filter((n) => n !== BY_LABEL),
    byLabel: list.includes(BY_LABEL),
    host: cfg.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock',
    stopTimeoutS: Math.max(1, Math.round(parseDuration(timeout, 'DOCKER_STOP_TIMEOUT', 's') / 1000)),
    read,
    helperImage: cfg.env.VOLUME_HELPER_IMAGE || str('volumeHelperImage'),
    mirrorDir: cfg.env.VOLUME_MIRROR_DIR || str('volumeMirrorDir'),
  };
}

/** Where a helper-read volume is mirrored: VOLUME_MIRROR_DIR/NAME, else <backup-dir>/volumes/.mirrors/NAME. */
export const volumeMirrorDir = (cfg: Config, s: VolumeSettings, name: string) =>
  path.join(s.mirrorDir ?? path.join(cfg.backupDir, 'volumes', '.mirrors'), name);

const readable = (dir: string) =>
  fsp.access(dir, fsConstants.R_OK | fsConstants.X_OK).then(
    () => true,
    () => false,
  );

/**
 * Whether a volume is read through the daemon; refuses when it must be and no image is named. A volume's
 * mountpoint is on the daemon's machine: on a remote daemon it is never ours, under a rootless daemon
 * it may be another user's.
 */
export async function readsThroughDaemon(docker: DockerEngine, s: VolumeSettings, vol: VolumeTarget): Promise<boolean> {
  const helper = s.read === 'helper' || (s.read === 'auto' && (docker.remote || !(await readable(vol.mountpoint))));
  if (helper && !s.helperImage)
    throw usageError(
      `volume ${vol.name}: its mountpoint ${vol.mountpoint} cannot be read here (${docker.remote ? 'a remote Docker daemon' : 'a rootless daemon, or no permission'})`,
      'set VOLUME_HELPER_IMAGE to an image the daemon already has (any image: no command runs in it) to read the volume through the daemon, or run vertex-backup as root on the Docker host',
    );
  if (!helper && docker.remote)
    throw usageError(`VOLUME_READ=mountpoint: volume ${vol.name} is on a remote Docker daemon (DOCKER_HOST=${s.host}), its mountpoint is not on this machine`);
  return helper;
}

/** One read of the volume through the daemon into its mirror: a container created (never started) to mount it, read, removed. */
async function mirrorVolume(
  docker: DockerEngine,
  vol: VolumeTarget,
  mirror: string,
  helperImage: string,
  linkFreeFrom: string,
  signal?: AbortSignal,
): Promise<MirrorStats> {
  const id = await docker.createReader(helperImage, vol.name, '/vb-volume');
  try {
    return await syncMirror(await docker.archive(id, '/vb-volume'), mirror, signal, linkFreeFrom);
  } finally {
    await docker.remove(id).catch(() => undefined);
  }
}

export interface ContainerDowntime {
  name: string;
  id: string;
  /** stopped by this run (false: it would not stop within the timeout, the volume was copied live) */
  stopped: boolean;
  /** from the stop request to the container running again */
  downtimeMs?: number;
  restarted?: boolean;
  error?: string;
}

export interface VolumeBackup {
  volume: string;
  mountpoint: string;
  /** read through the daemon into this local mirror (see readsThroughDaemon) */
  mirror?: string;
  backupDir: string;
  /** the backup that holds the volume (the catch-up pass when containers were stopped) */
  id?: string;
  passes: CreatedBackup[];
  containers: ContainerDowntime[];
  warnings: string[];
  error?: string;
}

export interface VolumeTarget {
  name: string;
  mountpoint: string;
  project?: string;
}

/** Every configured volume, checked to exist before anything is written. */
export async function findVolumes(docker: DockerEngine, s: VolumeSettings): Promise<VolumeTarget[]> {
  const out = new Map<string, VolumeTarget>();
  for (const name of s.names) {
    const v = await docker.inspectVolume(name);
    if (!v) {
      const known = (await docker.listVolumes()).map((x) => x.Name);
      throw usageError(`no Docker volume named '${name}'`, `known volumes: ${known.join(', ') || 'none'}; fix VOLUMES or the config key 'volumes'`);
    }
    out.set(name, { name, mountpoint: v.Mountpoint, project: v.Labels?.[LABEL_PROJECT] });
  }
  if (s.byLabel) {
    for (const v of await docker.listVolumes(`${LABEL_BACKUP}=true`))
      out.set(v.Name, { name: v.Name, mountpoint: v.Mountpoint, project: v.Labels?.[LABEL_PROJECT] });
  }
  return [...out.values()];
}

/**
 * The containers a run may stop for a volume: labelled vertex-backup.stop=true, running now, and of the
 * volume's own compose project (a labelled container of another project is left alone, with a warning).
 */
export async function containersToStop(docker: DockerEngine, vol: VolumeTarget): Promise<{ stop: ContainerSummary[]; warnings: string[] }> {
  const warnings: string[] = [];
  const stop: ContainerSummary[] = [];
  for (const c of await docker.containersUsing(vol.name)) {
    if (c.Labels?.[LABEL_STOP] !== 'true' || c.State !== 'running') continue;
    const project = c.Labels[LABEL_PROJECT];
    if (vol.project !== undefined && project !== vol.project) {
      warnings.push(
        `container ${containerName(c)} is labelled ${LABEL_STOP}=true but belongs to compose project '${project ?? 'none'}', not '${vol.project}' (volume ${vol.name}): not stopped`,
      );
      continue;
    }
    stop.push(c);
  }
  return { stop, warnings };
}

export interface VolumeRunOptions {
  signal?: AbortSignal;
  now?: () => Date;
  onProgress?: ProgressFn;
  recipients?: Recipient[] | null;
  storage?: StorageRunOptions;
  onEvent?: (line: string) => void;
}

const volumeConfig = (cfg: Config, vol: VolumeTarget): Config => ({ ...cfg, backupDir: volumeBackupDir(cfg.backupDir, vol.name), storagePath: vol.mountpoint });

/** Starts what this run stopped; every start is tried, failures are returned, never thrown. */
async function startAgain(docker: DockerEngine, stopped: { c: ContainerSummary; rec: ContainerDowntime; at: number }[]): Promise<void> {
  for (const s of stopped) {
    try {
      await docker.start(s.c.Id);
      s.rec.restarted = true;
    } catch (err) {
      s.rec.restarted = false;
      s.rec.error = (err as Error).message;
    }
    s.rec.downtimeMs = Date.now() - s.at;
  }
}

export async function backupVolume(
  cfg: Config,
  docker: DockerEngine,
  s: VolumeSettings,
  vol: VolumeTarget,
  opts: VolumeRunOptions = {},
): Promise<VolumeBackup> {
  const mirror = (await readsThroughDaemon(docker, s, vol)) ? volumeMirrorDir(cfg, s, vol.name) : undefined;
  const sub = { ...volumeConfig(cfg, vol), ...(mirror ? { storagePath: mirror } : {}) };
  await fsp.mkdir(sub.backupDir, { recursive: true, mode: 0o700 });
  const { stop, warnings } = await containersToStop(docker, vol);
  const result: VolumeBackup = { volume: vol.name, mountpoint: vol.mountpoint, mirror, backupDir: sub.backupDir, passes: [], containers: [], warnings };
  const pass = async () => {
    if (mirror) {
      // the whole volume crosses the daemon's API on each pass: with stopped containers the catch-up
      // pass, and so the downtime, takes as long as that read (docs/docker-volumes.md)
      opts.onEvent?.(`reading volume ${vol.name} through the Docker daemon into ${mirror}`);
      // below the backup directory, `volumes/.mirrors` is this tool's own: no link allowed on the way either
      const m = await mirrorVolume(docker, vol, mirror, s.helperImage!, s.mirrorDir ? path.dirname(mirror) : cfg.backupDir, opts.signal);
      for (const p of m.skipped) {
        const w = `volume ${vol.name}: special file ${p} not backed up (device, fifo or socket)`;
        if (!result.warnings.includes(w)) result.warnings.push(w);
      }
    }
    const r = await runCreate(sub, {
      type: 'storage',
      signal: opts.signal,
      now: opts.now,
      onProgress: opts.onProgress,
      recipients: opts.recipients,
      storage: opts.storage,
    });
    result.passes.push(...r.backups);
    result.warnings.push(...r.warnings);
    return r;
  };
  // without a container to stop, one pass; with one, the live pass copies the bulk while it runs
  let last = await pass();
  if (!stop.length) {
    result.id = last.id;
    return result;
  }
  const stopped: { c: ContainerSummary; rec: ContainerDowntime; at: number }[] = [];
  try {
    for (const c of stop) {
      const rec: ContainerDowntime = { name: containerName(c), id: c.Id.slice(0, 12), stopped: false };
      result.containers.push(rec);
      const at = Date.now();
      opts.onEvent?.(`stopping container ${rec.name} (volume ${vol.name})`);
      const ok = await docker.stopGracefully(c.Id, s.stopTimeoutS);
      if (ok) {
        rec.stopped = true;
        stopped.push({ c, rec, at });
      } else {
        result.warnings.push(`container ${rec.name} did not stop within ${s.stopTimeoutS} s: volume ${vol.name} is copied while it runs (live)`);
      }
    }
    // the fault suite stops the run here, containers down, to send it SIGTERM (see ops/fault-point.ts)
    faultPoint('volume-stopped');
    await new Promise((res) => setImmediate(res));
    opts.signal?.throwIfAborted();
    // only what changed since the live pass: the containers are down for this much
    last = await pass();
  } finally {
    await startAgain(docker, stopped);
  }
  result.id = last.id;
  // the downtime is known once they run again: recorded in the catch-up backup's sidecar
  const sc = last.backups.find((b) => b.type === 'storage')?.sidecarPath;
  if (sc) {
    const sidecar = JSON.parse(await fsp.readFile(sc, 'utf8')) as Record<string, unknown>;
    sidecar.volume = {
      name: vol.name,
      live_pass: result.passes[0]?.id,
      containers: result.containers.map((c) => ({ name: c.name, id: c.id, stopped: c.stopped, downtime_ms: c.downtimeMs, restarted: c.restarted })),
    };
    await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
  }
  const failed = result.containers.filter((c) => c.restarted === false);
  if (failed.length)
    throw new BackupError(
      'FAILED',
      `container ${failed.map((c) => `${c.name} (${c.error})`).join(', ')} did not start again after the backup of volume ${vol.name}`,
      {
        hint: `the backup ${result.id} is made; start it by hand: docker start ${failed.map((c) => c.name).join(' ')}`,
      },
    );
  return result;
}

/** Every configured volume, one after the other; containers stopped for one are running before the next. */
export async function backupVolumes(cfg: Config, s: VolumeSettings, opts: VolumeRunOptions = {}): Promise<VolumeBackup[]> {
  const docker = new DockerEngine({ host: s.host });
  await docker.ping();
  const vols = await findVolumes(docker, s);
  const out: VolumeBackup[] = [];
  for (const v of vols) {
    opts.signal?.throwIfAborted();
    out.push(await backupVolume(cfg, docker, s, v, opts));
  }
  return out;
}
