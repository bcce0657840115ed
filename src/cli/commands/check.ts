import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { action } from '../run.js';
import { typeOption } from '../options.js';

export function register(program: Command): void {
  program
    .command('check')
    .description('for monitoring: exit 0 when every enabled type has a recent ok backup and the last runs succeeded')
    .option('--max-age <duration>', 'newest ok backup must be younger than this, e.g. 26h, 90m, 2d (env BACKUP_CHECK_MAX_AGE)', undefined)
    .option(
      '--max-drill-age <duration>',
      'once restore drills are set up (one was recorded, or BACKUP_DRILL_ENABLED=true): the last drill must have passed and be younger than this (env BACKUP_CHECK_MAX_DRILL_AGE, default 8d)',
    )
    .addOption(typeOption('check only this type (default: every type not disabled by BACKUP_<TYPE>_ENABLED)'))
    .option('--notify', 'send an alert through the configured channels when the check fails (NOTIFY_ON=always: every time)')
    .addHelpText(
      'after',
      `
Each run of create, rotate and verify records its outcome in <backup-dir>/status.json; check fails
when one of the last runs failed, even if an older backup is still young enough.

Examples:
  vertex-backup check                          # all enabled types, limit 26h
  vertex-backup check --type storage --max-age 8d
  vertex-backup check --notify                 # from cron at 05:00: alert when something is wrong
  vertex-backup check --json                   # for a monitoring agent`,
    )
    .action(
      action('check', async (ctx, cmd) => {
        const o = cmd.opts() as { maxAge?: string; maxDrillAge?: string; type?: BackupType };
        const { checkBackups, enabledTypes, DEFAULT_MAX_AGE_MS } = await import('../../ops/check.js');
        const { parseDuration } = await import('../../schedule/duration.js');
        const { formatAge } = await import('../../format.js');
        const { usageError, argumentError } = await import('../../errors.js');
        const raw = o.maxAge ?? ctx.cfg.env.BACKUP_CHECK_MAX_AGE;
        const maxAgeMs = raw ? parseDuration(raw, o.maxAge ? '--max-age' : 'BACKUP_CHECK_MAX_AGE') : DEFAULT_MAX_AGE_MS;
        if (maxAgeMs <= 0) throw argumentError('--max-age must be longer than zero');
        const types = o.type ? [o.type] : enabledTypes(ctx.cfg.env);
        if (!types.length) throw usageError('every backup type is disabled (BACKUP_<TYPE>_ENABLED=false): nothing to check');
        const rawDrill = o.maxDrillAge ?? ctx.cfg.env.BACKUP_CHECK_MAX_DRILL_AGE;
        const maxDrillAgeMs = rawDrill ? parseDuration(rawDrill, o.maxDrillAge ? '--max-drill-age' : 'BACKUP_CHECK_MAX_DRILL_AGE') : undefined;
        if (maxDrillAgeMs !== undefined && maxDrillAgeMs <= 0) throw argumentError('--max-drill-age must be longer than zero');
        // only an explicit "true" expects drills before the first one: unset must not fail anyone's check
        const drillExpected = /^(1|true|yes|on)$/i.test(ctx.cfg.env.BACKUP_DRILL_ENABLED?.trim() ?? '');
        const result = await checkBackups({ backupDir: ctx.cfg.backupDir, maxAgeMs, types, includeOtherRuns: !o.type, maxDrillAgeMs, drillExpected });

        const fresh = result.types.filter((t) => t.ok).map((t) => `${t.type} ${formatAge(t.age_ms ?? 0)} old`);
        return {
          json: result,
          exitCode: result.ok ? 0 : 1,
          // a failed check's summary is its reason: it is what the alert and the log show
          summary: result.ok ? `backups are fresh: ${fresh.join(', ')}` : result.reasons.join('; '),
          human: (ui) => {
            // what is fine on stdout, each problem once on stderr (so --quiet, as from cron, keeps them)
            for (const t of result.types)
              if (t.ok) ui.out(`${ui.c.green('✔')} ${t.type.padEnd(8)} newest ok: ${t.newest_id} (${formatAge(t.age_ms ?? 0)} old)`);
            for (const r of result.runs)
              if (r.ok) ui.out(`${ui.c.green('✔')} last ${r.type ? `${r.command} --type ${r.type}` : r.command}: ok at ${r.finished_at}`);
            if (result.drill?.ok && result.drill.last)
              ui.out(
                `${ui.c.green('✔')} last drill: ${result.drill.last.result}, RTO ${result.drill.last.rto_ms === undefined ? 'none' : formatAge(result.drill.last.rto_ms)}, ${formatAge(result.drill.age_ms ?? 0)} ago`,
              );
            if (result.ok) ui.out(`OK: every checked type has an ok backup younger than ${formatAge(maxAgeMs)}`);
            else for (const r of result.reasons) ui.error(r);
          },
        };
      }),
    );
}
