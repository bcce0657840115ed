import type { Command } from 'commander';
import type { BackupType } from '../catalog/sidecar.js';
import type { RetentionPolicy } from '../ops/retention.js';
import { loadRemotes, openRemoteByName, transferProgress } from './commands/remote.js';
import type { Context, Outcome } from './run.js';
import { printBackupTable } from './backup-table.js';
import { backupJson } from '../results/backups.js';
import { formatBytes, formatDuration } from '../human.js';

/**
 * The `--remote NAME` branches of list, verify and rotate: each returns the Outcome the command's
 * action hands back, so those commands only add an option and one `if`.
 */

async function withRemote<T>(ctx: Context, cmd: Command, name: string, fn: (remote: import('../remote/remote.js').Remote) => Promise<T>): Promise<T> {
  const remote = await openRemoteByName(ctx, await loadRemotes(ctx, cmd), name);
  try {
    return await fn(remote);
  } finally {
    await remote.close();
  }
}

export async function remoteListOutcome(ctx: Context, cmd: Command, name: string, type?: BackupType): Promise<Outcome> {
  const { listRemoteBackups } = await import('../offsite/transfer.js');
  const { list: listed, url } = await withRemote(ctx, cmd, name, async (r) => ({ list: await listRemoteBackups(r, { type, signal: ctx.signal }), url: r.url }));
  // an encrypting remote's sidecars are sealed: opened with the identity, when one is given
  let list = listed;
  const { commandIdentities } = await import('./encryption-options.js');
  const identities = await commandIdentities(ctx, cmd);
  if (identities.length) {
    const opened = await (await import('../offsite/sealed-fields.js')).unsealListing(listed, identities);
    for (const p of opened.problems) ctx.ui.warn(p);
    list = opened.entries;
  }
  const rows = list.map((b) => ({ ...b, fileCount: b.sidecar?.file_count }));
  return {
    json: rows.map((b) => backupJson(b, { remote: url })),
    human: (ui) => printBackupTable(ui, rows, `no backups on ${url}`),
  };
}

/** `list --remote NAME --missing`: the complete local backups the remote lacks, and the lag they make. */
export async function remoteMissingOutcome(ctx: Context, cmd: Command, name: string, type?: BackupType): Promise<Outcome> {
  const { missingOnRemote } = await import('../ops/replication.js');
  const m = await withRemote(ctx, cmd, name, (r) => missingOnRemote(r, ctx.cfg.backupDir, { type, signal: ctx.signal }));
  // a full listing: what status.json records the remote holds is brought up to date with it
  const { recordReplication } = await import('../catalog/replication.js');
  const { listBackups } = await import('../catalog/local-store.js');
  const { remoteUrl } = await import('./commands/sync.js');
  await recordReplication(ctx.cfg.backupDir, name, await listBackups(ctx.cfg.backupDir), {
    url: remoteUrl(await loadRemotes(ctx, cmd), name),
    confirmed: m.held,
    listed: true,
    newestHeld: m.newestHeld,
  }).catch((err) => ctx.ui.warn(`cannot record the listing in status.json: ${(err as Error).message}`));
  return {
    json: { remote: name, lag_seconds: m.lagSeconds, missing: m.missing.map((b) => backupJson(b, { sidecar: b.sidecarPath ?? null })) },
    human: (ui) => {
      printBackupTable(ui, m.missing, `${name} holds every complete local backup`);
      if (m.missing.length) ui.out(`${name} lacks ${m.missing.length} backups; it is ${formatDuration(m.lagSeconds * 1000)} behind`);
    },
  };
}

export async function remoteVerifyOutcome(
  ctx: Context,
  cmd: Command,
  name: string,
  sel: { ref?: string; all?: boolean; type?: BackupType; samplePercent?: number },
): Promise<Outcome> {
  const { verifyRemote } = await import('../ops/verify.js');
  const report = await withRemote(ctx, cmd, name, (r) => verifyRemote(r, { ...sel, signal: ctx.signal, onEvent: transferProgress(ctx, name) }));
  const bad = report.results.filter((r) => !r.ok);
  return {
    json: { remote: name, ...report },
    exitCode: report.ok ? 0 : 3,
    summary: report.ok
      ? `${report.results.length} backups on ${name} verified`
      : `${bad.length} damaged on ${name}: ${bad.map((b) => `${b.type} ${b.id}`).join(', ')}`,
    log: { remote: name, ok: report.ok, damaged: bad.map((b) => `${b.type}:${b.id}`), sample_percent: sel.samplePercent },
    human: (ui) => {
      const rows = report.results.map((r) => [
        r.type,
        r.id,
        r.ok ? ui.c.green('ok') : ui.c.red('DAMAGED'),
        r.totalFiles ? `${r.checkedFiles}/${r.totalFiles} files, ${formatBytes(r.bytes)}` : '-',
        r.problems.join('; '),
      ]);
      ui.out(ui.table(['type', 'id', 'status', 'checked', 'problems'], rows));
      if (sel.samplePercent !== undefined && sel.samplePercent < 100) ui.out(`sampled ${sel.samplePercent}% of the files of each backup at random`);
    },
  };
}

export async function remoteRotateOutcome(
  ctx: Context,
  cmd: Command,
  name: string,
  policy: RetentionPolicy,
  opts: { type?: BackupType; dryRun?: boolean },
): Promise<Outcome> {
  const { rotateRemote } = await import('../ops/rotate.js');
  const r = await withRemote(ctx, cmd, name, (remote) => rotateRemote(remote, { policy, ...opts, signal: ctx.signal }));
  // copies were deleted: the next sync must not trust the record of what the remote holds
  if (!r.dryRun && r.deleted.length) {
    const { forgetReplication } = await import('../catalog/replication.js');
    await forgetReplication(ctx.cfg.backupDir, name).catch((err) => ctx.ui.warn(`cannot update status.json: ${(err as Error).message}`));
  }
  for (const v of r.volumes ?? []) {
    if (r.dryRun || !v.deleted.length) continue;
    const { forgetReplication } = await import('../catalog/replication.js');
    const { volumeBackupDir } = await import('../ops/volumes.js');
    await forgetReplication(volumeBackupDir(ctx.cfg.backupDir, v.volume), name).catch((err) =>
      ctx.ui.warn(`cannot update status.json: ${(err as Error).message}`),
    );
  }
  const freed = r.deleted.reduce((n, d) => n + d.bytes, 0);
  return {
    json: r,
    summary: `${r.dryRun ? 'would remove' : 'removed'} ${r.deleted.length} backups on ${name}, ${formatBytes(freed)}`,
    log: r.dryRun ? undefined : { remote: name, policy, removed: r.deleted.map((d) => `${d.type}:${d.id}`), freed, stale_temps: r.staleTemps.length },
    human: (ui) => {
      if (!r.deleted.length) ui.out(`nothing to remove on ${name} (${r.kept.length} kept)`);
      else {
        ui.out(
          ui.table(
            ['type', 'id', r.dryRun ? 'would remove' : 'removed', 'size'],
            r.deleted.map((d) => [d.type, d.id, d.reason, formatBytes(d.bytes)]),
          ),
        );
        ui.out(`${r.dryRun ? 'would free' : 'freed'} ${formatBytes(freed)} on ${name}; ${r.kept.length} kept${r.dryRun ? ' (dry run: nothing removed)' : ''}`);
      }
      for (const v of r.volumes ?? [])
        ui.out(
          v.deleted.length
            ? `volume ${v.volume}: ${r.dryRun ? 'would remove' : 'removed'} ${v.deleted.length} backups (${formatBytes(v.deleted.reduce((n, d) => n + d.bytes, 0))}), ${v.kept.length} kept`
            : `volume ${v.volume}: nothing to remove (${v.kept.length} kept)`,
        );
      if (r.staleTemps.length) ui.out(`${r.dryRun ? 'would remove' : 'removed'} ${r.staleTemps.length} temp objects of long-interrupted uploads`);
    },
  };
}
