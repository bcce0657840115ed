import { formatBytes, formatDuration } from '../human.js';
import type { VolumeBackup, VolumeSettings } from '../ops/volumes.js';
import { reportHook } from './hook-lines.js';
import type { Context, Outcome } from './run.js';
import type { Ui } from './ui.js';

/** Per volume: where its backup is, and how long each stopped container was down. */
export function printVolumes(ui: Ui, volumes: VolumeBackup[]): void {
  for (const v of volumes) {
    const size = v.passes.reduce((s, b) => s + b.sizeBytes, 0);
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

/** `create --type volumes`: only the Docker volumes, under the lock and between the hooks. */
export async function createVolumesOnly(ctx: Context, settings: VolumeSettings, wait: string): Promise<Outcome> {
  const { acquireLock } = await import('../catalog/lock.js');
  const hooksMod = await import('../ops/hooks.js');
  const { runCreateWithHooks, volumeLog } = await import('../ops/create-run.js');
  const hooks = hooksMod.resolveHooks(ctx.cfg.file, ctx.cfg.env);
  const started = Date.now();
  const lock = await acquireLock(ctx.cfg.backupDir, 'create --type volumes', { waitMs: (Number(wait) || 0) * 1000, signal: ctx.signal });
  try {
    const hooked = await runCreateWithHooks(ctx.cfg, {
      type: 'volumes',
      hooks,
      volumes: settings,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.event(p),
      onHook: (r) => reportHook(ctx.ui, hooksMod.describeRun(r), r),
      onEvent: (l) => ctx.ui.info(l),
    });
    const volumes = hooked.volumes ?? [];
    warnVolumes(ctx.ui, volumes);
    const { volumesDocument } = await import('../results/documents.js');
    const json = volumesDocument(volumes, hooked.hooks, hooked.failedAfter, Date.now() - started);
    const size = json.sizeBytes;
    const down = volumes.flatMap((v) => v.containers.filter((c) => c.stopped).map((c) => `${c.name} down ${formatDuration(c.downtimeMs ?? 0)}`));
    return {
      json,
      exitCode: hooked.failedAfter.length ? 1 : 0,
      summary: `volumes backup: ${volumes.map((v) => `${v.volume} ${v.id}`).join(', ')}, ${formatBytes(size)}${down.length ? `; ${down.join(', ')}` : ''}${hooked.failedAfter.map((r) => `; ${hooksMod.describeRun(r)}`).join('')}`,
      sizeBytes: size,
      log: { type: 'volumes', status: 'ok', size, volumes: volumeLog(volumes), hooks: hooksMod.hookLog(hooked.hooks) },
      human: (ui) => {
        ui.out(`${ui.c.green('✔')} volumes backup — ${formatBytes(size)} in ${formatDuration(Date.now() - started)}`);
        printVolumes(ui, volumes);
      },
    };
  } finally {
    lock.release();
  }
}
