import { type Command, InvalidArgumentError } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import type { RetentionPolicy } from '../../ops/retention.js';
import type { RotateResult } from '../../ops/rotate.js';
import { action } from '../run.js';
import { remotesConfigOption, typeOption, waitOption } from '../options.js';
import type { Ui } from '../ui.js';
import { countOf, formatBytes } from '../../human.js';

function count(flag: string) {
  return (v: string) => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || n > 100000) throw new InvalidArgumentError(`${flag} must be a whole number from 0 to 100000`);
    return n;
  };
}

export function register(program: Command): void {
  program
    .command('rotate')
    .description('remove old backups by the retention policy (per type; components of kept full backups are kept)')
    .option('--max-backups <n>', 'keep the N newest per type (env MAX_BACKUPS, default 7)')
    .option('--keep-last <n>', 'same as --max-backups', count('--keep-last'))
    .option('--keep-daily <n>', 'keep the newest backup of each of the last N days that have one', count('--keep-daily'))
    .option('--keep-weekly <n>', 'keep the newest of each of the last N weeks', count('--keep-weekly'))
    .option('--keep-monthly <n>', 'keep the newest of each of the last N months', count('--keep-monthly'))
    .option('--keep-yearly <n>', 'keep the newest of each of the last N years', count('--keep-yearly'))
    .addOption(typeOption('only remove backups of this type'))
    .option('-n, --dry-run', 'show what would be removed, remove nothing')
    .option('--remote <name>', 'apply the policy to the copies on this remote instead')
    .addOption(remotesConfigOption())
    .addOption(waitOption())
    .addHelpText(
      'after',
      `
With only --keep-daily/--keep-weekly/--keep-monthly/--keep-yearly, --max-backups does not apply;
combine them with --keep-last. Incomplete leftovers older than the newest good backup are removed.

Examples:
  vertex-backup rotate --max-backups 7
  vertex-backup rotate --keep-last 3 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
  vertex-backup rotate --remote s3-offsite --keep-daily 30`,
    )
    .action(
      action('rotate', async (ctx, cmd) => {
        const o = cmd.opts() as {
          remote?: string;
          keepLast?: number;
          keepDaily?: number;
          keepWeekly?: number;
          keepMonthly?: number;
          keepYearly?: number;
          type?: BackupType;
          dryRun?: boolean;
          wait: string;
        };
        // flags > MAX_BACKUPS / KEEP_* > config file, folded once in resolveConfig
        const policy: RetentionPolicy = ctx.cfg.retention;
        if (o.remote) return (await import('../remote-outcomes.js')).remoteRotateOutcome(ctx, cmd, o.remote, policy, { type: o.type, dryRun: o.dryRun });
        const { rotateBackups } = await import('../../ops/rotate.js');
        const r = await rotateBackups(ctx.cfg, { policy, dryRun: o.dryRun, type: o.type, signal: ctx.signal, lockWaitMs: Number(o.wait) * 1000 || 0 });
        return {
          json: r,
          summary: `${r.dryRun ? 'would remove' : 'removed'} ${countOf(r.removed.length, 'backup')}, ${formatBytes(r.freedBytes)}`,
          log: o.dryRun ? undefined : { policy, removed: r.removed.map((x) => `${x.type}:${x.id}`), freed: r.freedBytes },
          human: (ui) => printRotation(ui, r),
        };
      }),
    );
}

/**
 * Every backup with what happens to it and the rule that keeps it (as `restic forget` shows), then the
 * total. A dry run prints the same figures as the real run would.
 */
export function printRotation(ui: Ui, r: RotateResult): void {
  const rows: (string | number)[][] = [];
  const order = ['full', 'database', 'storage'];
  const all = [
    ...r.kept.map((k) => ({ type: k.type, id: k.id, action: 'keep', why: k.reasons.join(', '), bytes: k.size_bytes })),
    ...r.removed.map((x) => ({ type: x.type, id: x.id, action: r.dryRun ? 'would remove' : 'removed', why: x.reason, bytes: x.size_bytes })),
  ].sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type) || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  for (const x of all) rows.push([x.type, x.id, x.action === 'keep' ? ui.c.green(x.action) : ui.c.yellow(x.action), x.why, formatBytes(x.bytes)]);
  if (rows.length) ui.out(ui.table(['type', 'id', 'action', 'rule', 'size'], rows, ['left', 'left', 'left', 'left', 'right']));
  const verb = r.dryRun ? 'would remove' : 'removed';
  ui.out(
    r.removed.length
      ? `${verb} ${countOf(r.removed.length, 'backup')}, ${r.dryRun ? 'would free' : 'freed'} ${formatBytes(r.freedBytes)}; ${r.kept.length} kept${r.dryRun ? ' (dry run: nothing removed)' : ''}`
      : `nothing to remove (${r.kept.length} kept)`,
  );
  // incremental storage backups: what each kept one still needs
  for (const k of r.kept) if (k.pins) ui.out(`  ${k.type} ${k.id} pins its chain: ${k.pins.join(', ')}`);
  // Docker volumes (volumes/<name>/): the same rules, one line each
  for (const v of r.volumes ?? [])
    ui.out(
      v.removed.length
        ? `volume ${v.volume}: ${verb} ${countOf(v.removed.length, 'backup')} (${formatBytes(v.freedBytes)}), ${v.kept.length} kept`
        : `volume ${v.volume}: nothing to remove (${v.kept.length} kept)`,
    );
  // page chains thinned in time before the rules (docs/point-in-time.md)
  const c = r.compacted;
  if (c?.merged.length)
    ui.out(
      `database page chains: ${countOf(c.merged.length, 'delta')} ${r.dryRun ? 'would be merged' : 'merged'} into ${countOf(c.rewritten.length, 'kept state')} (every state for 24 h, one an hour for 7 days, then one a day)${r.dryRun ? '' : `: ${formatBytes(c.bytesBefore)} -> ${formatBytes(c.bytesAfter)}`}`,
    );
  if (c?.dropped.length) ui.out(`database page chains: ${countOf(c.dropped.length, 'delta')} no kept state needs removed`);
  for (const p of c?.problems ?? []) ui.warn(p);
}
