import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { countOf, formatAge, formatBytes, formatDuration } from '../../human.js';
import type { DrillResult } from '../../ops/drill.js';
import { identityOption, commandIdentities } from '../encryption-options.js';
import { action } from '../run.js';
import type { Ui } from '../ui.js';
import { remotesConfigOption, typeOption, waitOption } from '../options.js';

/** The exit code of a drill: 0 passed, 1 a target missed, 3 the backup could not be restored or proved. */
export const drillExitCode = (r: DrillResult) => (r.result === 'passed' ? 0 : r.result === 'target-missed' ? 1 : 3);

/** One line for the log, the notification and a failed run's summary. */
export function drillSummary(r: DrillResult): string {
  const what = r.backup ? `${r.backup.type} backup ${r.backup.id}${r.source === 'local' ? '' : ` from ${r.source}`}` : 'no backup';
  const age = r.rpo.types.find((t) => t.type === r.rpo.judged_type)?.age_seconds;
  const rto = r.rto.measured_ms === null ? 'none (not restored)' : formatDuration(r.rto.measured_ms);
  const rpo = age === null || age === undefined ? (r.result === 'failed' ? 'no good backup' : '?') : formatAge(age);
  const figures = `RTO ${rto} (target ${formatDuration(r.rto.target_ms)}), RPO ${rpo} (target ${formatDuration(r.rpo.target_ms)})`;
  if (r.result === 'failed') return `drill FAILED: ${what}: ${r.problems.join('; ')}; ${figures}`;
  if (r.result === 'target-missed') return `drill restored ${what} but missed a target: ${r.targets_missed.join('; ')}; ${figures}`;
  return `drill passed: ${what} restored and proved; ${figures}`;
}

function render(ui: Ui, r: DrillResult): void {
  const mark = r.result === 'passed' ? ui.c.green('✔') : r.result === 'target-missed' ? ui.c.yellow('!') : ui.c.red('✘');
  ui.out(`${mark} drill of ${r.backup?.type} backup ${ui.c.bold(r.backup?.id ?? '?')} (${r.source}): ${r.result.toUpperCase()}`);
  const t = r.timings_ms;
  ui.out(
    `  RTO  ${(r.rto.measured_ms === null ? 'none' : formatDuration(r.rto.measured_ms)).padEnd(9)} target ${formatDuration(r.rto.target_ms).padEnd(8)} ${r.rto.measured_ms === null ? 'FAILED (not restored)' : r.rto.ok ? 'ok' : 'MISSED'}   (download ${formatDuration(t.download)}, verify ${formatDuration(t.verify)}, restore ${formatDuration(t.restore)}${r.rto.extrapolated ? `; extrapolated from a ${r.sample?.percent}% sample that took ${formatDuration(r.rto.sampled_ms ?? 0)}` : ''})`,
  );
  if (r.sample) {
    const s = r.sample;
    ui.out(
      `  sample ${s.percent}%: ${s.stored_files_read} stored files (${formatBytes(s.stored_bytes_read)}) hashed, coverage ${s.coverage.coverage_pct}% of ${formatBytes(s.stored_bytes_total)} after ${s.coverage.runs_in_cycle} of ${s.coverage.runs_per_cycle} drills; ${s.tree_files_restored} of ${s.tree_files_total} tree files restored`,
    );
  }
  for (const p of r.rpo.types) {
    const judged = p.type === r.rpo.judged_type;
    ui.out(
      `  RPO  ${p.type.padEnd(8)} newest ${formatAge((p.age_seconds ?? 0) * 1000)} old, longest gap in 7 days ${formatAge(p.longest_gap_ms ?? 0)} (${p.good_backups_7d} good)${judged ? `  target ${formatDuration(r.rpo.target_ms)} ${r.rpo.ok ? 'ok' : 'MISSED'}` : ''}`,
    );
  }
  if (r.database) {
    const bad = r.database.tables.filter((x) => !x.ok).length;
    const rows = r.database.tables.reduce((n, x) => n + (x.rows ?? 0), 0);
    ui.out(
      `  database ${r.database.backup_id}: integrity_check ${r.database.integrity.slice(0, 60)}, ${r.database.tables.length} tables, ${rows} rows${r.database.row_counts_recorded ? (bad ? `, ${bad} differ from the recorded counts` : ', every count as recorded') : ''}`,
    );
  }
  // PostgreSQL: each database restored into its scratch database, its own RTO
  for (const d of r.databases ?? [])
    ui.out(
      `  database ${d.name}: ${d.ok ? 'restored' : 'FAILED'} in ${formatDuration(d.restoreMs)}${d.tables !== undefined ? `, ${countOf(d.tables, 'table')}, ${countOf(d.rows ?? 0, 'row')}${d.ok ? ', every count as recorded' : ''}` : ''}`,
    );
  const pit = r.point_in_time;
  if (pit)
    ui.out(
      `  point in time: the state at ${pit.state_at}, level 0 + ${pit.deltas} deltas; ${pit.states} states in the 24 h before it, gaps between them max ${formatDuration(pit.max_gap_ms)}, p99 ${formatDuration(pit.p99_gap_ms)} (the RPO achieved)`,
    );
  if (r.storage)
    ui.out(
      `  storage  ${r.storage.backup_id}: ${r.storage.entries} entries, ${formatBytes(r.storage.bytes)}${r.storage.manifest_checked ? ', every file hashed against the manifest' : ''}`,
    );
  if (r.live) {
    ui.out(`  live tree ${r.live.storage_path}: ${r.live.sampled} files sampled, ${r.live.changed} changed and ${r.live.missing} gone since the backup`);
    for (const e of r.live.examples) ui.out(ui.c.dim(`    ${e}`));
  }
  ui.out(`  ${r.kept ? `scratch copy kept at ${r.scratch}` : 'scratch copy removed'}`);
  for (const n of r.notes) ui.warn(n);
  for (const m of r.targets_missed) ui.error(m);
  for (const p of r.problems) ui.error(p);
}

export function register(program: Command): void {
  const command = program
    .command('drill')
    .description('restore the newest good backup into a scratch directory, prove it, and measure RTO and RPO')
    .option('--from <remote>', 'download the backup from this remote (name or URL) instead of the local backup directory')
    .addOption(remotesConfigOption())
    .addOption(typeOption('drill the newest good backup of this type (default: the newest full backup)'))
    .option('--keep', 'keep the scratch copy (in the backup directory) for inspection')
    .option(
      '--sample <percent>',
      'hash about this share of the stored files and restore this share of the tree, covering everything within ceil(100/PCT) drills; RTO extrapolated',
    )
    .option('--rto-target <duration>', 'restore time objective, e.g. 1h, 30m (env RTO_TARGET, default 1h)')
    .option('--rpo-target <duration>', 'recovery point objective, e.g. 4h, 26h (env RPO_TARGET, default 4h)')
    .addOption(waitOption())
    .addHelpText(
      'after',
      `
The drill never touches the live database or storage: it restores into <backup-dir>/.drill-<id>-…,
checks the database (integrity_check, every table with the row counts recorded at backup time) and
the storage tree (every file hashed against the manifest), compares a sample of the live tree, then
removes the copy (unless --keep).

Exit codes: 0 passed; 1 restored but RTO or RPO target missed; 3 the backup could not be restored or
proved; 5 not enough free space for the scratch copy.

Examples:
  vertex-backup drill                          # the newest full backup, local
  vertex-backup drill --from offsite --identity /root/backup-key.txt
  vertex-backup drill --type database --json`,
    );
  identityOption(command).action(
    action('drill', async (ctx, cmd) => {
      const o = cmd.opts() as { from?: string; type?: BackupType; keep?: boolean; sample?: string; rtoTarget?: string; rpoTarget?: string; wait: string };
      const { parseDuration } = await import('../../schedule/duration.js');
      const { runDrill, drillRecord, DEFAULT_RTO_TARGET_MS, DEFAULT_RPO_TARGET_MS } = await import('../../ops/drill.js');
      const target = (flag: string | undefined, flagName: string, envName: string, fileKey: string, dflt: number) => {
        const fromFile = ctx.cfg.file[fileKey];
        const raw = flag ?? ctx.cfg.env[envName] ?? (fromFile === undefined ? undefined : String(fromFile));
        const name = flag !== undefined ? flagName : ctx.cfg.env[envName] !== undefined ? envName : `config key '${fileKey}'`;
        return raw === undefined ? dflt : parseDuration(raw, name);
      };
      const rtoTargetMs = target(o.rtoTarget, '--rto-target', 'RTO_TARGET', 'rtoTarget', DEFAULT_RTO_TARGET_MS);
      const rpoTargetMs = target(o.rpoTarget, '--rpo-target', 'RPO_TARGET', 'rpoTarget', DEFAULT_RPO_TARGET_MS);
      const { parsePercent } = await import('../../ops/sample.js');
      const samplePercent = o.sample === undefined ? undefined : parsePercent(o.sample);
      const identities = await commandIdentities(ctx, cmd, false);
      const common = {
        type: o.type,
        keep: o.keep,
        samplePercent,
        identities,
        rtoTargetMs,
        rpoTargetMs,
        signal: ctx.signal,
        lockWaitMs: Number(o.wait) * 1000 || 0,
        onProgress: (p: import('../../ops/progress.js').ProgressEvent) => ctx.progress.event(p),
      };
      let result: DrillResult;
      if (o.from) {
        const { loadRemotes, openRemoteByName, transferProgress } = await import('./remote.js');
        const remote = await openRemoteByName(ctx, await loadRemotes(ctx, cmd), o.from);
        try {
          result = await runDrill(ctx.cfg, { ...common, remote, remoteLabel: o.from, transfer: { onEvent: transferProgress(ctx, o.from) } });
        } finally {
          await remote.close();
        }
      } else {
        result = await runDrill(ctx.cfg, common);
      }
      const summary = drillSummary(result);
      const { recordDrill } = await import('../../catalog/status.js');
      await recordDrill(ctx.cfg.backupDir, drillRecord(result)).catch((err) =>
        ctx.ui.warn(`cannot record the drill in status.json: ${(err as Error).message}`),
      );
      return {
        json: result,
        exitCode: drillExitCode(result),
        summary,
        sizeBytes: result.bytes.restored,
        log: {
          id: result.backup?.id,
          type: result.backup?.type,
          drill: result.result,
          source: result.source,
          rto_ms: result.rto.measured_ms ?? undefined,
          problems: result.problems,
          targets_missed: result.targets_missed,
        },
        human: (ui) => render(ui, result),
      };
    }),
  );
}
