import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { BACKUP_TYPES } from '../catalog/sidecar.js';
import { lagFromRecord } from '../catalog/replication.js';
import { readStatus } from '../catalog/status.js';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { exists, freeSpace, tempNameBeside, writeFileAtomic } from '../fsutil.js';

/**
 * The node_exporter textfile collector file (`--metrics-file`, METRICS_FILE): what the backup directory
 * and status.json say, in the Prometheus text format, names in the style of restic-exporter. Rewritten
 * whole after each run, atomically (temp file + rename in the same directory): the collector never
 * reads half a file.
 */

interface Sample {
  labels?: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: Sample[];
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

/** The text format: HELP and TYPE once per family, then its samples. Families without samples are left out. */
export function renderMetrics(families: Family[]): string {
  const lines: string[] = [];
  for (const f of families) {
    if (!f.samples.length) continue;
    lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels =
        s.labels && Object.keys(s.labels).length
          ? `{${Object.entries(s.labels)
              .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
              .join(',')}}`
          : '';
      lines.push(`${f.name}${labels} ${formatValue(s.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

const seconds = (iso: string | undefined) => (iso ? Date.parse(iso) / 1000 : Number.NaN);

/** Every metric, from the backup directory's listing (`entries`: one the caller holds, serve's shared one) and status.json. */
export async function collectMetrics(backupDir: string, entries?: BackupEntry[]): Promise<Family[]> {
  const fam = (name: string, help: string, type: Family['type'] = 'gauge'): Family => ({ name: `vertex_backup_${name}`, help, type, samples: [] });
  const lastSuccess = fam('last_success_timestamp_seconds', 'Unix time of the last successful run of each job (create: the newest good backup of the type)');
  const lastRun = fam('last_run_timestamp_seconds', 'Unix time the last run of each job finished');
  const lastRunOk = fam('last_run_success', '1 when the last run of each job succeeded, 0 when it failed');
  const lastRunExit = fam('last_run_exit_code', 'Exit code of the last run of each job');
  const lastRunDuration = fam('last_run_duration_seconds', 'Wall time of the last run of each job');
  const backups = fam('backups', 'Good backups (ok or partial) in the backup directory, per type');
  const backupBytes = fam(
    'backups_bytes',
    "Bytes of the good backups in the backup directory, per type; a full backup's components count under database and storage only, so the sum over types is the disk used",
  );
  const lastBytes = fam('last_backup_size_bytes', 'Size on disk of the newest good backup of each type');
  const lastFiles = fam('last_backup_files', 'Files in the newest good storage backup (the whole tree for incremental ones)');
  const lastDuration = fam('last_backup_duration_seconds', 'How long the newest good backup of each type took to make');
  const damaged = fam('damaged_backups', 'Backups that are incomplete or damaged, per type (removed by rotate, or to look at)');
  const verifyOk = fam('last_verify_success', '1 when the last verify found nothing damaged, 0 otherwise');
  const drillOk = fam('drill_last_success', '1 when the last restore drill passed (restored, proved, within RTO and RPO targets)');
  const drillResult = fam('drill_last_result', 'The result of the last restore drill: 1 for the one that applies');
  const drillTime = fam('drill_last_timestamp_seconds', 'Unix time the last restore drill finished');
  const drillRto = fam('drill_rto_seconds', 'RTO measured by the last restore drill: download + verify + restore (extrapolated when sampled)');
  const drillRtoTarget = fam('drill_rto_target_seconds', 'RTO target the last drill judged against (RTO_TARGET)');
  const drillRpo = fam('drill_rpo_seconds', 'Age of the drilled backup when the last drill started');
  const drillRpoTarget = fam('drill_rpo_target_seconds', 'RPO target the last drill judged against (RPO_TARGET)');
  const drillBytes = fam('drill_restored_bytes', 'Bytes the last drill restored');
  const dbSuccess = fam('database_last_success_timestamp_seconds', 'Unix time of the newest good backup holding each PostgreSQL database');
  const dbBytes = fam('database_last_size_bytes', 'Size of the newest good dump of each PostgreSQL database');
  const dbRows = fam('database_last_rows', 'Rows of each PostgreSQL database, counted in the snapshot of its newest good dump');
  const volumeSuccess = fam('volume_last_success_timestamp_seconds', 'Unix time of the newest good backup of each Docker volume');
  const volumeBytes = fam('volume_backups_bytes', 'Bytes of the good backups of each Docker volume');
  const downtime = fam(
    'volume_container_downtime_seconds',
    'How long each stop-labelled container was down for the newest catch-up backup of its volume (0 when it was not stopped)',
  );
  const replLag = fam(
    'replication_lag_seconds',
    'How long each remote has been behind: the age of the oldest complete local backup newer than the newest it holds (0: up to date), as of the last sync or listing',
  );
  const replMissing = fam('replication_missing_backups', 'Complete local backups each remote does not hold, as of the last sync or listing');
  const replSyncOk = fam('replication_last_sync_success', '1 when the last sync to each remote succeeded, 0 when it failed');
  const free = fam('backup_dir_free_bytes', 'Free bytes at the backup directory');
  const scrape = fam('metrics_timestamp_seconds', 'Unix time this file was written');
  const families = [
    lastSuccess,
    lastRun,
    lastRunOk,
    lastRunExit,
    lastRunDuration,
    backups,
    backupBytes,
    lastBytes,
    lastFiles,
    lastDuration,
    damaged,
    verifyOk,
    drillOk,
    drillResult,
    drillTime,
    drillRto,
    drillRtoTarget,
    drillRpo,
    drillRpoTarget,
    drillBytes,
    dbSuccess,
    dbBytes,
    dbRows,
    volumeSuccess,
    volumeBytes,
    downtime,
    replLag,
    replMissing,
    replSyncOk,
    free,
    scrape,
  ];

  entries ??= (await exists(backupDir)) ? await listBackups(backupDir) : [];
  for (const type of BACKUP_TYPES) {
    const good = entries.filter((e) => e.type === type && (e.status === 'ok' || e.status === 'partial'));
    const labels = { type };
    backups.samples.push({ labels, value: good.length });
    // a full backup's size is its components', which are database and storage backups of their own:
    // summed per type they would count twice, so a full backup counts its own files (the sidecar)
    let bytes = 0;
    for (const e of good) bytes += type === 'full' ? await ownFileBytes(e.files) : e.size;
    backupBytes.samples.push({ labels, value: bytes });
    damaged.samples.push({ labels, value: entries.filter((e) => e.type === type && (e.status === 'damaged' || e.status === 'incomplete')).length });
    const newest = good[0];
    if (!newest) continue;
    lastSuccess.samples.push({ labels: { job: 'create', type }, value: newest.createdAt.getTime() / 1000 });
    lastBytes.samples.push({ labels, value: newest.size });
    const s = newest.sidecar;
    if (s?.duration_ms !== undefined) lastDuration.samples.push({ labels, value: s.duration_ms / 1000 });
    const files = s?.tree_files ?? s?.file_count;
    if (type === 'storage' && files !== undefined) lastFiles.samples.push({ labels, value: files });
  }

  // each database of the backups of sources (PostgreSQL), newest good backup first: a database left
  // out of the configuration shows its age growing rather than disappearing
  const seenDb = new Set<string>();
  for (const e of entries.filter((x) => x.type === 'database' && (x.status === 'ok' || x.status === 'partial'))) {
    for (const c of (e.sidecar?.components ?? []).filter((x) => x.role === 'data')) {
      const key = `${c.kind}\0${c.name}`;
      if (seenDb.has(key)) continue;
      seenDb.add(key);
      const labels = { database: c.name, kind: c.kind };
      dbSuccess.samples.push({ labels, value: e.createdAt.getTime() / 1000 });
      dbBytes.samples.push({ labels, value: c.size });
      const tables = c.info?.tables as Record<string, number> | undefined;
      if (tables) dbRows.samples.push({ labels, value: Object.values(tables).reduce((n, r) => n + r, 0) });
    }
  }

  const { status } = (await exists(backupDir)) ? await readStatus(backupDir) : { status: null };
  for (const run of Object.values(status?.runs ?? {})) {
    const labels = { job: run.command, type: run.type ?? '' };
    lastRun.samples.push({ labels, value: seconds(run.finished_at) });
    lastRunOk.samples.push({ labels, value: run.ok ? 1 : 0 });
    lastRunExit.samples.push({ labels, value: run.exit_code });
    lastRunDuration.samples.push({ labels, value: run.duration_ms / 1000 });
    // create's last success is its newest backup (above); the others' only when their last run succeeded
    if (run.ok && run.command !== 'create') lastSuccess.samples.push({ labels, value: seconds(run.finished_at) });
    if (run.command === 'verify') verifyOk.samples.push({ value: run.ok ? 1 : 0 });
  }
  const d = status?.drill;
  if (d) {
    drillOk.samples.push({ value: d.result === 'passed' ? 1 : 0 });
    for (const r of ['passed', 'target-missed', 'failed']) drillResult.samples.push({ labels: { result: r }, value: d.result === r ? 1 : 0 });
    drillTime.samples.push({ value: seconds(d.finished_at) });
    const labels = { source: d.source, type: d.backup_type ?? '' };
    if (d.rto_ms !== undefined) drillRto.samples.push({ labels, value: d.rto_ms / 1000 });
    drillRtoTarget.samples.push({ value: d.rto_target_ms / 1000 });
    if (d.rpo_ms !== undefined) drillRpo.samples.push({ labels, value: d.rpo_ms / 1000 });
    drillRpoTarget.samples.push({ value: d.rpo_target_ms / 1000 });
    if (d.bytes_restored !== undefined) drillBytes.samples.push({ labels, value: d.bytes_restored });
  }
  // what each remote held at its last sync, against the local directory as it is now: a backup made
  // since then and not sent yet makes the lag grow between syncs
  for (const [remote, record] of Object.entries(status?.replication ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const lag = lagFromRecord(entries, record);
    replLag.samples.push({ labels: { remote }, value: lag.lagSeconds });
    replMissing.samples.push({ labels: { remote }, value: lag.missing.length });
    if (record.last_sync) replSyncOk.samples.push({ labels: { remote }, value: record.last_sync.ok ? 1 : 0 });
  }
  // Docker volumes: each its own backup directory under volumes/ (see ops/volumes.ts)
  const volumesDir = path.join(backupDir, 'volumes');
  // a Docker volume name never starts with a dot: .mirrors holds the helper-read volumes' mirrors
  for (const name of (await fsp.readdir(volumesDir).catch(() => [] as string[])).filter((n) => !n.startsWith('.')).sort()) {
    const good = (await listBackups(path.join(volumesDir, name), { type: 'storage' })).filter((e) => e.status === 'ok' || e.status === 'partial');
    if (!good.length) continue;
    volumeSuccess.samples.push({ labels: { volume: name }, value: good[0]!.createdAt.getTime() / 1000 });
    volumeBytes.samples.push({ labels: { volume: name }, value: good.reduce((n, e) => n + e.size, 0) });
    const caught = good.find((e) => e.sidecar?.volume)?.sidecar?.volume;
    for (const c of caught?.containers ?? [])
      downtime.samples.push({ labels: { volume: name, container: c.name }, value: (c.stopped ? (c.downtime_ms ?? 0) : 0) / 1000 });
  }
  if (await exists(backupDir)) free.samples.push({ value: await freeSpace(backupDir) });
  scrape.samples.push({ value: Date.now() / 1000 });
  return families;
}

/**
 * Writes the metrics file atomically. Mode 0644: node_exporter runs as another user, and the file holds
 * figures, no secrets.
 */
export async function writeMetricsFile(file: string, backupDir: string): Promise<void> {
  const text = renderMetrics(await collectMetrics(backupDir));
  // node_exporter reads only *.prom: a temp name that does not end in .prom is never collected half-written.
  // The textfile directory may be shared: the temp name is unguessable and created exclusively, never
  // through a link another user planted there
  await writeFileAtomic(file, text, 0o644, tempNameBeside(file, '.', '.tmp'));
}

async function ownFileBytes(files: string[]): Promise<number> {
  let n = 0;
  for (const f of files) n += (await fsp.stat(f).catch(() => undefined))?.size ?? 0;
  return n;
}
