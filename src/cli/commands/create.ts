import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import type { CreateResult } from '../../ops/create.js';
import type { RotateResult } from '../../ops/rotate.js';
import { action, type Context, type Outcome } from '../run.js';
import { createDocument } from '../../results/documents.js';
import { remotesConfigOption, typeOption, waitOption } from '../options.js';
import { printRotation } from './rotate.js';
import { reportHook } from '../hook-lines.js';
import type { Ui } from '../ui.js';
import { printVolumes, warnVolumes } from '../volumes-create.js';
import { countOf, formatBytes, formatDuration } from '../../human.js';

interface CreateFlags {
  type: BackupType | 'volumes';
  volumes?: string;
  rotate?: boolean;
  dryRun?: boolean;
  wait: string;
  sync?: string | boolean;
  maxBackups?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  full?: boolean;
  reread?: boolean;
  allowEmpty?: boolean;
  fullEvery: string;
  incremental?: boolean;
}

export function register(program: Command): void {
  program
    .command('create')
    .description('create a backup: the database, the storage directory, or both ("full")')
    .addOption(typeOption('what to back up (volumes: only the Docker volumes of VOLUMES)').choices(['full', 'database', 'storage', 'volumes']).default('full'))
    .option('--volumes <names>', 'Docker volumes to back up too, comma-separated, @label for every volume labelled vertex-backup.backup=true (env VOLUMES)')
    .option('--compression <codec>', 'gzip (default), none, zstd, xz, bzip2 (env BACKUP_COMPRESSION)')
    .option('--compression-level <n>', 'codec level (env BACKUP_COMPRESSION_LEVEL)')
    .option('--split-size <MiB>', 'split archives into parts of this size while writing (env BACKUP_SPLIT_SIZE_MB)')
    .option('--exclude <glob>', 'leave out matching paths (repeatable; env BACKUP_EXCLUDE, comma-separated)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--full', 'storage, or database with --incremental: a level 0 backup, starting a new chain (default: only what changed)')
    .option('--incremental', 'database: only the pages that changed since the previous backup (point-in-time restore, see docs/point-in-time.md)')
    .option('--reread', 'storage: read and hash every file instead of trusting unchanged size, times and inode')
    .option('--allow-empty', 'storage: back up an empty storage directory even though the last backup of it held files (refused by default: an unmounted disk)')
    .option('--full-every <duration>', 'storage (and database with --incremental): start a new chain (level 0) once its base is this old, like 7d or 36h', '7d')
    .option('--rotate', 'apply the retention policy after a successful backup (MAX_BACKUPS, KEEP_DAILY/WEEKLY/MONTHLY/YEARLY)')
    .option('--max-backups <n>', 'keep this many per type after the backup; implies --rotate (env MAX_BACKUPS, default 7)')
    .option('--keep-daily <n>', 'keep the newest backup of each of the last N days; implies --rotate (env KEEP_DAILY)')
    .option('--keep-weekly <n>', 'keep the newest of each of the last N weeks; implies --rotate (env KEEP_WEEKLY)')
    .option('--keep-monthly <n>', 'keep the newest of each of the last N months; implies --rotate (env KEEP_MONTHLY)')
    .option('--keep-yearly <n>', 'keep the newest of each of the last N years; implies --rotate (env KEEP_YEARLY)')
    .option('--sync [remote]', 'after a successful backup, upload it to this remote (default: every enabled remote)')
    .addOption(remotesConfigOption())
    .addOption(waitOption())
    .option('-n, --dry-run', 'walk the sources and show what would be backed up (files, bytes, estimated size, what each --exclude matched); write nothing')
    .option('--encrypt', 'encrypt (age format) to BACKUP_RECIPIENTS / BACKUP_RECIPIENTS_FILE; an error when none is set')
    .option('--recipient <age1…>', 'encrypt to this age recipient (repeatable; implies --encrypt)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--recipients-file <file>', 'encrypt to the age1… recipients in this file (implies --encrypt)')
    .addHelpText(
      'after',
      `
Examples:
  vertex-backup create                                  # full backup with the defaults
  vertex-backup create --type database --json           # database only, result as JSON
  vertex-backup create --type database --incremental    # a page delta (the 30 s timer, see docs/point-in-time.md)
  vertex-backup create --type storage --compression zstd --exclude '*.tmp'
  vertex-backup create --dry-run --exclude '/cache' --exclude '*.tmp'   # what would be backed up
  vertex-backup create --type full --rotate --max-backups 14   # what the systemd unit runs
  vertex-backup create --recipient age1…                # encrypted: storage_backup_ID.tar.gz.age`,
    )
    .action(action('create', runCreate));
}

async function runCreate(ctx: Context, cmd: Command): Promise<Outcome> {
  const o = cmd.opts() as CreateFlags;
  const { parseDuration } = await import('../../schedule/duration.js');
  const fullEveryMs = parseDuration(o.fullEvery, '--full-every');
  // a retention flag on the command line says "rotate": taking it and keeping everything would be a surprise
  const rotate = o.rotate || [o.maxBackups, o.keepDaily, o.keepWeekly, o.keepMonthly, o.keepYearly].some((v) => v !== undefined);
  const volumesMod = await import('../../ops/volumes.js');
  const volumeSettings = volumesMod.resolveVolumeSettings(ctx.cfg, o.volumes);
  if (o.type === 'volumes') {
    if (!volumeSettings)
      throw new (await import('../../errors.js')).BackupError('USAGE', '--type volumes but no volume is named', {
        hint: 'set VOLUMES=name,name (or @label), the config key "volumes", or --volumes',
        argument: true,
      });
    return (await import('../volumes-create.js')).createVolumesOnly(ctx, volumeSettings, o.wait);
  }
  if (o.dryRun) return planOutcome(await (await import('../../ops/plan.js')).planCreate(ctx.cfg, o.type as BackupType));
  const { acquireLock } = await import('../../catalog/lock.js');
  const { checkInputs } = await import('../../ops/create.js');
  const waitS = Number(o.wait);
  if (!Number.isFinite(waitS) || waitS < 0)
    throw new (await import('../../errors.js')).BackupError('USAGE', `--wait must be a number of seconds, got '${o.wait}'`, { argument: true });
  const storage = { full: o.full, reread: o.reread, fullEveryMs, allowEmpty: o.allowEmpty };
  const hooksMod = await import('../../ops/hooks.js');
  const hooks = hooksMod.resolveHooks(ctx.cfg.file, ctx.cfg.env);
  // with a before hook the storage directory may be filled by it: checked again once it ran
  if (!hooks.before.length) await checkInputs(ctx.cfg, o.type as BackupType, storage);
  const recipients = await (await import('../encryption-options.js')).createRecipients(ctx, cmd);
  const lock = await acquireLock(ctx.cfg.backupDir, `create --type ${o.type}`, { waitMs: waitS * 1000, signal: ctx.signal });
  try {
    const { runCreateWithHooks } = await import('../../ops/create-run.js');
    const hooked = await runCreateWithHooks(ctx.cfg, {
      type: o.type as BackupType,
      hooks,
      volumes: volumeSettings,
      storage,
      recipients,
      database: o.incremental ? { incremental: true, full: o.full, fullEveryMs } : undefined,
      signal: ctx.signal,
      onProgress: (p) => ctx.progress.event(p),
      onHook: (r) => reportHook(ctx.ui, hooksMod.describeRun(r), r),
      onEvent: (l) => ctx.ui.info(l),
    });
    const result = hooked.result!;
    if (hooked.volumes) warnVolumes(ctx.ui, hooked.volumes);
    let rotation: RotateResult | undefined;
    if (rotate && result.ok) {
      const { runRotate } = await import('../../ops/rotate.js');
      rotation = await runRotate(ctx.cfg, { policy: ctx.cfg.retention, signal: ctx.signal });
    }
    const sync = o.sync && result.backups.length ? await syncAfter(ctx, cmd, o.sync, result) : undefined;
    return await createOutcome(hooked, rotation, sync);
  } finally {
    lock.release();
  }
}

type SyncLine = { remote: string; ok: boolean; uploaded?: number; error?: string };

/** `--sync`: the local backup is safe whatever happens now: a failed upload is reported, exit 1. */
async function syncAfter(ctx: Context, cmd: Command, which: string | true, result: CreateResult): Promise<SyncLine[]> {
  const { loadRemotes, selectRemotes } = await import('./remote.js');
  const { syncEach } = await import('./sync.js');
  const remotes = await loadRemotes(ctx, cmd);
  const names = selectRemotes(remotes, typeof which === 'string' ? [which] : undefined);
  const done = await syncEach(ctx, remotes, names, { ids: [result.id], type: result.type });
  return done.map((s) => ({ remote: s.remote, ok: s.ok, uploaded: s.result?.bytes, error: s.error }));
}

type Hooked = Awaited<ReturnType<typeof import('../../ops/create-run.js').runCreateWithHooks>>;

async function createOutcome(hooked: Hooked, rotation: RotateResult | undefined, sync: SyncLine[] | undefined): Promise<Outcome> {
  const hooksMod = await import('../../ops/hooks.js');
  const { volumeLog } = await import('../../ops/create-run.js');
  const { EXIT_SKIPPED } = await import('../../errors.js');
  const result = hooked.result!;
  const volumes = hooked.volumes;
  const hookFailed = hooked.failedAfter.length > 0;
  const syncFailed = sync?.some((s) => !s.ok) ?? false;
  const skipped = result.skipped.length
    ? `; ${result.skipped.length} path${result.skipped.length === 1 ? '' : 's'} could not be read and ${result.skipped.length === 1 ? 'is' : 'are'} not in the backup: ${result.skipped
        .slice(0, 10)
        .map((p) => `${p.path} (${p.error})`)
        .join(', ')}${result.skipped.length > 10 ? ', …' : ''}`
    : '';
  // a notification names each PostgreSQL database the backup holds
  const dbNames = result.backups.flatMap((b) => b.databases ?? []);
  const databasesNamed = dbNames.length ? ` (${dbNames.length === 1 ? 'database' : 'databases'} ${dbNames.join(', ')})` : '';
  return {
    json: createDocument(result, { volumes, rotation, sync, hooks: hooked.hooks.length ? hooked.hooks : undefined }),
    exitCode: !result.ok || syncFailed || hookFailed ? 1 : result.skipped.length ? EXIT_SKIPPED : 0,
    summary: `${result.type} backup ${result.id}: ${result.status}, ${formatBytes(result.sizeBytes)} in ${formatDuration(result.durationMs)}${databasesNamed}${skipped}${hooked.failedAfter.map((r) => `; ${hooksMod.describeRun(r)}`).join('')}`,
    sizeBytes: result.sizeBytes,
    log: {
      type: result.type,
      id: result.id,
      status: result.status,
      size: result.sizeBytes,
      backups: result.backups.map((b) => `${b.type}:${b.id}`),
      warnings: result.warnings.length || undefined,
      skipped: result.skipped.length ? result.skipped : undefined,
      errors: result.errors.length ? result.errors : undefined,
      hooks: hooksMod.hookLog(hooked.hooks),
      volumes: volumes && volumeLog(volumes),
    },
    human: (ui) => printCreate(ui, hooked, rotation, sync, EXIT_SKIPPED),
  };
}

function printCreate(ui: Ui, hooked: Hooked, rotation: RotateResult | undefined, sync: SyncLine[] | undefined, exitSkipped: number): void {
  const result = hooked.result!;
  const mark = result.ok ? ui.c.green('✔') : ui.c.yellow('!');
  ui.out(
    `${mark} ${result.type} backup ${ui.c.bold(result.id)} ${ui.status(result.status)} — ${formatBytes(result.sizeBytes)} in ${formatDuration(result.durationMs)}`,
  );
  for (const b of result.backups) {
    if (b.type === 'full') continue;
    const files =
      b.fileCount !== undefined
        ? `, ${countOf(b.fileCount, 'file')}${b.level !== undefined ? ` (level ${b.level})` : ''}`
        : b.level !== undefined
          ? ` (level ${b.level})`
          : '';
    ui.out(`  ${b.type.padEnd(8)} ${formatBytes(b.sizeBytes)}${files}  ${b.files[0]}`);
    // a backup of several databases: every dump (and the globals) beside the first
    if (b.type === 'database')
      for (const f of b.files.slice(1).filter((x) => !x.endsWith('.json'))) ui.out(`  ${' '.repeat(8)} ${' '.repeat(formatBytes(b.sizeBytes).length)}  ${f}`);
  }
  if (hooked.volumes) printVolumes(ui, hooked.volumes);
  for (const n of result.notes) ui.warn(n);
  if (result.skipped.length) {
    ui.error(
      `${result.skipped.length} path${result.skipped.length === 1 ? '' : 's'} could not be read and ${result.skipped.length === 1 ? 'is' : 'are'} NOT in this backup (exit ${exitSkipped}):`,
    );
    for (const p of result.skipped.slice(0, 50)) ui.error(`  ${p.path}: ${p.error}`);
    if (result.skipped.length > 50) ui.error(`  …and ${result.skipped.length - 50} more (see the sidecar's "skipped")`);
  }
  for (const w of result.warnings.slice(0, 20)) ui.warn(w);
  if (result.warnings.length > 20) ui.warn(`…and ${result.warnings.length - 20} more warnings (see the sidecar)`);
  for (const e of result.errors) ui.error(e);
  for (const s of sync ?? [])
    s.ok ? ui.out(`  sync to ${s.remote}: ${formatBytes(s.uploaded ?? 0)} uploaded`) : ui.error(`sync to ${s.remote} failed: ${s.error}`);
  if (rotation) {
    ui.out('rotation:');
    printRotation(ui, rotation);
  }
}

function planOutcome(plan: import('../../ops/plan.js').CreatePlan) {
  return {
    json: plan,
    human: (ui: import('../ui.js').Ui) => {
      ui.out(`dry run: create --type ${plan.type} would back up (nothing written)`);
      if (plan.database) ui.out(`  database  ${formatBytes(plan.database.bytes).padStart(10)}  ${plan.database.path}`);
      if (plan.storage) {
        ui.out(`  storage   ${formatBytes(plan.storage.bytes).padStart(10)}  ${countOf(plan.storage.files, 'file')} in ${plan.storage.path}`);
        ui.out(`            estimated archive ${formatBytes(plan.storage.estimatedSize)} (${plan.storage.compression})`);
      }
      for (const x of plan.excludes) ui.out(`  exclude '${x.pattern}': ${countOf(x.matched, 'path')} left out`);
      ui.out(`total ${countOf(plan.files, 'file')}, ${formatBytes(plan.bytes)}; the backup would add about ${formatBytes(plan.estimatedSize)}`);
      for (const w of plan.warnings) ui.warn(w);
    },
  };
}
