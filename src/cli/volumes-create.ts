import { formatBytes, formatDuration } from '../human.js';
import type { VolumeBackup, VolumeSettings } from '../ops/volumes.js';
import { reportHook } from './hook-lines.js';
import type { Context, Outcome } from './run.js';
import type { Ui } from './ui.js';

/** Per volume: where its backup is, and how long each stopped container was down. */
export function printVolumes(ui: Ui, volumes: VolumeBackup[]): void {
  for (const v of volumes) {
    const size = v.passes.reduce((s, b) => s + b.size, 0);
    const passes = v.passes.length > 1 ? `, live pass ${v.passes[0].id} + catch-up` : '';
    ui.out(`  volume   ${v.volume}: backup ${v.id} (${formatBytes(size)}${passes})  ${v.backupDir}`);
    for (const c of v.containers) {
      if (c.stopped) ui.out(`           container ${c.name} down ${formatDuration(c.downtimeMs ?? 0)}${c.restarted ? '' : ui.c.red(' — NOT STARTED AGAIN')}`);
    }
  }
}

/** Warnings reach stderr in every mode (--json too): a container copied live must be heard about. */
export function warnVolumes(ui: Ui, volumes: VolumeBackup[]): void {
  for (const v of volumes) for (const w of v.warnings) ui.warn(w);
}

export const volumeLog = (volumes: VolumeBackup[]) =>
  volumes.map((v) => ({
    volume: v.volume,
    id: v.id,
    backup_dir: v.backupDir,
    passes: v.passes.map((p) => p.id),
    containers: v.containers.map((c) => ({ name: c.name, stopped: c.stopped, downtime_ms: c.downtimeMs, restarted: c.restarted })),
  }));

/** `create --type volumes`: only the Docker volumes, under the lock and between the hooks. */
export async function createVolumesOnly(ctx: Context, settings: VolumeSettings, wait: string): Promise<Outcome> {
  const { acquireLock } = await import('../catalog/lock.js');
  const hooksMod = await import('../ops/hooks.js');
  const { backupVolumes } = await import('../ops/volumes.js');
  const hooks = hooksMod.resolveHooks(ctx.cfg.file, ctx.cfg.env);
  const started = Date.now();
  const lock = await acquireLock(ctx.cfg.backupDir, 'create --type volumes', { waitMs: (Number(wait) || 0) * 1000, signal: ctx.signal });
  try {
    const hooked = await hooksMod.runAround(
      {
        hooks,
        env: ctx.cfg.env,
        ctx: { operation: 'create', type: 'volumes', backupDir: ctx.cfg.backupDir },
        signal: ctx.signal,
        onRun: (r) => reportHook(ctx.ui, hooksMod.describeRun(r), r),
        describe: (vs: VolumeBackup[]) => ({ id: vs.map((v) => `${v.volume}:${v.id}`).join(' '), paths: vs.flatMap((v) => v.passes.flatMap((p) => p.files)) }),
      },
      () => backupVolumes(ctx.cfg, settings, { signal: ctx.signal, onProgress: (p) => ctx.progress.event(p), onEvent: (l) => ctx.ui.info(l) }),
    );
    const volumes = hooked.value;
    warnVolumes(ctx.ui, volumes);
    const size = volumes.reduce((s, v) => s + v.passes.reduce((a, b) => a + b.size, 0), 0);
    const down = volumes.flatMap((v) => v.containers.filter((c) => c.stopped).map((c) => `${c.name} down ${formatDuration(c.downtimeMs ?? 0)}`));
    return {
      json: {
        ok: hooked.failedAfter.length === 0,
        type: 'volumes',
        volumes,
        size,
        durationMs: Date.now() - started,
        hooks: hooked.runs.length ? hooked.runs : undefined,
      },
      exitCode: hooked.failedAfter.length ? 1 : 0,
      summary: `volumes backup: ${volumes.map((v) => `${v.volume} ${v.id}`).join(', ')}, ${formatBytes(size)}${down.length ? `; ${down.join(', ')}` : ''}${hooked.failedAfter.map((r) => `; ${hooksMod.describeRun(r)}`).join('')}`,
      sizeBytes: size,
      log: { type: 'volumes', status: 'ok', size, volumes: volumeLog(volumes), hooks: hooksMod.hookLog(hooked.runs) },
      human: (ui) => {
        ui.out(`${ui.c.green('✔')} volumes backup — ${formatBytes(size)} in ${formatDuration(Date.now() - started)}`);
        printVolumes(ui, volumes);
      },
    };
  } finally {
    lock.release();
  }
}
