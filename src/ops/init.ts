import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { DIR_MARKER, markBackupDir } from '../catalog/marker.js';
import { BackupError, usageError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { markRemote } from '../offsite/remote-marker.js';
import { openRemoteDefinition } from '../remote/registry.js';
import { errorMessage } from '../remote/remote.js';
import { maskUrl } from '../secrets.js';
import { testRemote } from './sync.js';

/**
 * `vertex-backup init`: the first-day set-up as one step. It writes the settings the systemd units
 * read (an env file) and a remotes file, marks the backup directory and each remote, and hands back
 * the systemd drop-ins that match the paths, so the operator edits nothing by hand.
 */
export interface InitSettings {
  /** a SQLite file, or a postgresql:// URL (DATABASE_URL) */
  database: string;
  storagePath: string;
  backupDir: string;
  envOut: string;
  remotesOut: string;
  remotes: { name: string; url: string }[];
  recipients: string[];
  telegramBotToken?: string;
  telegramChatId?: string;
  healthcheckUrl?: string;
  metricsFile?: string;
  /** the command systemd runs: the real path of this binary */
  bin: string;
  /** replace an existing env or remotes file */
  force: boolean;
  /** the service user: owns the backup directory and the remotes file (the units run as it) */
  owner?: { uid: number; gid: number };
  env: NodeJS.ProcessEnv;
}

export interface InitRemote {
  name: string;
  url: string;
  ok: boolean;
  marker_id?: string;
  created_root?: string;
  /** the root was made on the root filesystem: likely a share that is not mounted */
  on_root_filesystem?: boolean;
  error?: string;
}

export interface InitResult {
  backup_dir: { path: string; id: string; created: boolean; adopted: boolean };
  env_file?: string;
  remotes_file?: string;
  remotes: InitRemote[];
  /** unit name -> drop-in text, for `systemctl edit UNIT` */
  overrides: Record<string, string>;
}

const isPostgres = (db: string) => /^postgres(ql)?:\/\//i.test(db);

/** A value as an env-file line reads it back (systemd's EnvironmentFile= and Node's parseEnv alike). */
function envValue(value: string): string {
  if (/^[A-Za-z0-9_./:@%+,=-]*$/.test(value)) return value;
  if (/["\\\n$`]/.test(value)) throw usageError(`cannot write ${JSON.stringify(value)} to an env file: it holds a quote, backslash, $ or newline`);
  return `"${value}"`;
}

async function refuseOverwrite(file: string, force: boolean, what: string): Promise<void> {
  if (force) return;
  const there = await fsp.lstat(file).then(
    () => true,
    () => false,
  );
  if (there)
    throw usageError(`${what} ${file} exists; init does not overwrite it`, 'pass --force to replace it, or --adopt to only mark an existing backup directory');
}

/** Marks the backup directory only: `init --adopt` for a set-up that predates markers. */
export async function adoptBackupDir(backupDir: string): Promise<InitResult['backup_dir']> {
  const { marker, existed } = await markBackupDir(backupDir, { create: false });
  return { path: backupDir, id: marker.id, created: false, adopted: !existed };
}

export async function initSetup(s: InitSettings, options: { signal?: AbortSignal } = {}): Promise<InitResult> {
  if (!path.isAbsolute(s.backupDir)) throw usageError(`the backup directory must be an absolute path, got ${s.backupDir}`);
  await refuseOverwrite(s.envOut, s.force, 'env file');
  await refuseOverwrite(s.remotesOut, s.force, 'remotes file');
  const names = new Set<string>();
  for (const r of s.remotes) {
    if (names.has(r.name)) throw usageError(`remote "${r.name}" is given twice`);
    names.add(r.name);
  }

  const dir = await markBackupDir(s.backupDir, { create: true });
  const remotes: InitRemote[] = [];
  for (const def of s.remotes) {
    if (options.signal?.aborted) throw options.signal.reason;
    const out: InitRemote = { name: def.name, url: maskUrl(def.url), ok: false };
    remotes.push(out);
    const open = () => openRemoteDefinition({ name: def.name, url: def.url, enabled: true, options: {} }, s.env);
    // testRemote closes the remote it tested: creating the root and marking get their own connections
    const withRemote = async <T>(fn: (r: Awaited<ReturnType<typeof open>>) => Promise<T>): Promise<T> => {
      const remote = await open();
      try {
        return await fn(remote);
      } finally {
        await remote.close().catch(() => {});
      }
    };
    try {
      const root = await withRemote(async (r) => r.createRoot?.());
      if (root?.created) out.created_root = root.path;
      if (root) out.on_root_filesystem = root.onRootFilesystem;
      const test = await testRemote(open, def.name);
      const failed = test.steps.find((st) => !st.ok);
      if (failed) throw new BackupError('FAILED', `${failed.step}: ${failed.error}`);
      out.marker_id = (await withRemote(markRemote)).marker.id;
      out.ok = true;
    } catch (err) {
      out.error = errorMessage(err);
    }
  }

  const remotesDoc = {
    remotes: Object.fromEntries(s.remotes.map((r, i) => [r.name, { url: r.url, ...(remotes[i]!.marker_id ? { marker_id: remotes[i]!.marker_id } : {}) }])),
  };
  await fsp.mkdir(path.dirname(s.remotesOut), { recursive: true, mode: 0o750 });
  await writeFileAtomic(s.remotesOut, `${JSON.stringify(remotesDoc, null, 2)}\n`, 0o600);
  await fsp.mkdir(path.dirname(s.envOut), { recursive: true, mode: 0o750 });
  // the env file stays root's: systemd reads EnvironmentFile= before it drops to the service user
  await writeFileAtomic(s.envOut, envFileText(s, dir.marker.id), 0o600);
  if (s.owner) {
    for (const p of [s.backupDir, path.join(s.backupDir, DIR_MARKER), s.remotesOut]) await fsp.chown(p, s.owner.uid, s.owner.gid);
  }

  return {
    backup_dir: { path: s.backupDir, id: dir.marker.id, created: dir.created, adopted: false },
    env_file: s.envOut,
    remotes_file: s.remotesOut,
    remotes,
    overrides: systemdOverrides(s, remotes),
  };
}

function envFileText(s: InitSettings, dirId: string): string {
  const line = (k: string, v: string | undefined) => (v ? `${k}=${envValue(v)}` : `#${k}=`);
  return [
    `# vertex-backup settings, written by \`vertex-backup init\` on ${new Date().toISOString()}.`,
    '# Read by the systemd units (EnvironmentFile=, it overrides their Environment= lines) and by',
    `# \`vertex-backup --env-file ${s.envOut} COMMAND\` at a shell. Mode 0600: it may hold secrets.`,
    '',
    '# What is backed up: the database (a SQLite file, or DATABASE_URL=postgresql://…) and the media tree',
    isPostgres(s.database) ? line('DATABASE_URL', s.database) : line('DATABASE_PATH', s.database),
    line('STORAGE_PATH', s.storagePath),
    '# Where backups go. BACKUP_DIR_ID is the id in its .vertex-backup-dir: a directory without that',
    '# marker (a disk that did not mount, a wrong path) is refused instead of being created anew.',
    line('BACKUP_DIR', s.backupDir),
    line('BACKUP_DIR_ID', dirId),
    '# Backups kept per type by --rotate',
    'MAX_BACKUPS=7',
    '',
    '# Offsite copies: the named remotes (`vertex-backup remote list`); each has a marker_id, and a remote',
    '# without its marker is refused the same way',
    line('REMOTES_CONFIG', s.remotesOut),
    '',
    '# Encryption: age public keys (vertex-backup keygen prints one); the private key stays off this server',
    line('BACKUP_RECIPIENTS', s.recipients.join(',') || undefined),
    '',
    '# Monitoring: failures to Telegram, a healthchecks.io ping per run, a node_exporter textfile',
    line('TELEGRAM_BOT_TOKEN', s.telegramBotToken),
    line('TELEGRAM_CHAT_ID', s.telegramChatId),
    line('HEALTHCHECK_URL', s.healthcheckUrl),
    '# The runs report themselves: the healthcheck gets a ping at the start and end of every run (it alerts',
    "# when they stop), Telegram only failures. Without a ping URL the units' OnFailure= unit reports",
    '# failures alone (NOTIFY_ON unset: no duplicate message).',
    line('NOTIFY_ON', s.healthcheckUrl ? 'failure' : undefined),
    line('METRICS_FILE', s.metricsFile),
    '',
  ].join('\n');
}

/**
 * Drop-ins for the shipped units: the paths this set-up writes (ProtectSystem=strict makes everything
 * else read-only, and ReadWritePaths= cannot read variables), and the nightly run with --sync when
 * there are remotes. `ReadWritePaths=` first empties the unit's default list: a default path that does
 * not exist here would stop the unit from starting.
 */
function systemdOverrides(s: InitSettings, remotes: InitRemote[]): Record<string, string> {
  const localRoots = remotes.filter((r) => r.url.startsWith('file:')).map((r) => decodeURIComponent(new URL(r.url).pathname));
  const dbDir = isPostgres(s.database) ? [] : [path.dirname(s.database)];
  const rw = (paths: string[]) => ['ReadWritePaths=', `ReadWritePaths=${[...new Set(paths)].join(' ')}`];
  const sync = remotes.some((r) => r.ok) ? ' --sync' : '';
  const unit = (lines: string[]) => `[Service]\n${lines.join('\n')}\n`;
  return {
    'vertex-backup.service': unit([
      'ExecStart=',
      `ExecStart=${s.bin} create --type full --rotate${sync}`,
      ...rw([s.backupDir, ...dbDir, s.storagePath, ...localRoots]),
    ]),
    'vertex-backup-sync.service': unit(['ExecStart=', `ExecStart=${s.bin} sync --quiet`, ...rw([s.backupDir, ...localRoots])]),
    'vertex-backup-drill.service': unit(['ExecStart=', `ExecStart=${s.bin} drill --wait 3600`, ...rw([s.backupDir])]),
    'vertex-backup-notify@.service': unit(['ExecStart=', `ExecStart=${s.bin} notify --failed-unit %i`]),
  };
}

/** The overrides as drop-ins (`<dir>/<unit>.d/vertex-backup-init.conf`), as `systemctl edit` would save them. */
export async function writeDropIns(systemdDir: string, overrides: Record<string, string>): Promise<string[]> {
  const out: string[] = [];
  for (const [unit, text] of Object.entries(overrides)) {
    const dir = path.join(systemdDir, `${unit}.d`);
    await fsp.mkdir(dir, { recursive: true, mode: 0o755 });
    const file = path.join(dir, 'vertex-backup-init.conf');
    await writeFileAtomic(file, `# written by vertex-backup init\n${text}`, 0o644);
    out.push(file);
  }
  return out;
}
