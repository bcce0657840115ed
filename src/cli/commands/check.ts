import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { action } from '../run.js';
import { remotesConfigOption, typeOption } from '../options.js';

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
    .option(
      '--max-replication-lag <duration>',
      'each remote (--remote, default every enabled one) must hold every complete local backup older than this, e.g. 26h (env BACKUP_CHECK_MAX_REPLICATION_LAG)',
    )
    .option('-r, --remote <name>', 'with --max-replication-lag: the remote to watch (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--refresh', 'with --max-replication-lag: list each remote instead of trusting what the last sync recorded in status.json')
    .addOption(remotesConfigOption())
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
  vertex-backup check --json                   # for a monitoring agent
  vertex-backup check --max-replication-lag 26h   # also: no remote more than 26h behind
  vertex-backup check --max-replication-lag 26h --refresh   # ... listing each remote now

The replication lag comes from what the last sync or listing recorded in status.json (no connection);
a remote without a record, or --refresh, is listed and the record updated.`,
    )
    .action(
      action('check', async (ctx, cmd) => {
        const o = cmd.opts() as { maxAge?: string; maxDrillAge?: string; type?: BackupType; maxReplicationLag?: string; remote?: string[]; refresh?: boolean };
        const { checkBackups, enabledTypes, DEFAULT_MAX_AGE_MS } = await import('../../ops/check.js');
        const { parseDuration } = await import('../../schedule/duration.js');
        const { formatAge } = await import('../../human.js');
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
        const rawLag = o.maxReplicationLag ?? ctx.cfg.env.BACKUP_CHECK_MAX_REPLICATION_LAG;
        let replication:
          | { remote: string; ok: boolean; lag_seconds?: number; missing?: number; newest_missing?: string; listed?: boolean; as_of?: string; error?: string }[]
          | undefined;
        if (rawLag) {
          const maxLagMs = parseDuration(rawLag, o.maxReplicationLag ? '--max-replication-lag' : 'BACKUP_CHECK_MAX_REPLICATION_LAG');
          if (maxLagMs <= 0) throw argumentError('--max-replication-lag must be longer than zero');
          const { loadRemotes, openRemoteByName, selectRemotes } = await import('./remote.js');
          const { replicationState } = await import('../../ops/replication.js');
          const { remoteUrl } = await import('./sync.js');
          const remotes = await loadRemotes(ctx, cmd);
          replication = [];
          for (const name of selectRemotes(remotes, o.remote)) {
            try {
              const m = await replicationState(() => openRemoteByName(ctx, remotes, name), { name, url: remoteUrl(remotes, name) }, ctx.cfg.backupDir, {
                signal: ctx.signal,
                retries: 1,
                refresh: o.refresh,
              });
              const ok = m.lagSeconds * 1000 <= maxLagMs;
              replication.push({
                remote: name,
                ok,
                lag_seconds: m.lagSeconds,
                missing: m.missing,
                newest_missing: m.newestMissing,
                listed: m.listed,
                as_of: m.asOf,
              });
              if (!ok) {
                result.reasons.push(
                  `replication to ${name} is ${formatAge(m.lagSeconds * 1000)} behind (limit ${formatAge(maxLagMs)}): ${m.missing} backups missing there, the newest ${m.newestMissing?.replace(':', ' ')}`,
                );
              }
            } catch (err) {
              replication.push({ remote: name, ok: false, error: (err as Error).message });
              result.reasons.push(`cannot check replication to ${name}: ${(err as Error).message}`);
            }
          }
          result.ok = result.ok && replication.every((r) => r.ok);
        }

        const fresh = result.types.filter((t) => t.ok).map((t) => `${t.type} ${formatAge((t.age_seconds ?? 0) * 1000)} old`);
        return {
          json: replication ? { ...result, replication } : result,
          exitCode: result.ok ? 0 : 1,
          // a failed check's summary is its reason: it is what the alert and the log show
          summary: result.ok ? `backups are fresh: ${fresh.join(', ')}` : result.reasons.join('; '),
          human: (ui) => {
            // what is fine on stdout, each problem once on stderr (so --quiet, as from cron, keeps them)
            for (const t of result.types)
              if (t.ok) ui.out(`${ui.c.green('✔')} ${t.type.padEnd(8)} newest ok: ${t.newest_id} (${formatAge((t.age_seconds ?? 0) * 1000)} old)`);
            for (const r of result.runs)
              if (r.ok) ui.out(`${ui.c.green('✔')} last ${r.type ? `${r.command} --type ${r.type}` : r.command}: ok at ${r.finished_at}`);
            if (result.drill?.ok && result.drill.last)
              ui.out(
                `${ui.c.green('✔')} last drill: ${result.drill.last.result}, RTO ${result.drill.last.rto_ms === undefined ? 'none' : formatAge(result.drill.last.rto_ms)}, ${formatAge((result.drill.age_seconds ?? 0) * 1000)} ago`,
              );
            for (const r of replication ?? result.replication ?? [])
              if (r.ok)
                ui.out(`${ui.c.green('✔')} replication to ${r.remote}: ${r.missing ? `${formatAge((r.lag_seconds ?? 0) * 1000)} behind` : 'up to date'}`);
            if (result.ok) ui.out(`OK: every checked type has an ok backup younger than ${formatAge(maxAgeMs)}`);
            else for (const r of result.reasons) ui.error(r);
          },
        };
      }),
    );
}
