import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseEnv } from 'node:util';
import * as v from 'valibot';
import { getCodec } from './codec/registry.js';
import { type BackupError, usageError } from './errors.js';
import { withoutBom } from './fsutil.js';
import { checkSecretFileMode, isSecretName, registerSecretsFromEnv, registerSecretsIn } from './secrets.js';
import { isPostgresUrl, type PostgresSettings, parsePostgresUrl } from './postgres-settings.js';

/** What the user can pass as flags; anything unset falls through to env, the config file, defaults. */
export interface ConfigFlags {
  backupDir?: string;
  dbPath?: string;
  storagePath?: string;
  config?: string;
  envFile?: string;
  maxBackups?: string | number;
  keepLast?: string | number;
  keepDaily?: string | number;
  keepWeekly?: string | number;
  keepMonthly?: string | number;
  keepYearly?: string | number;
  compression?: string;
  compressionLevel?: string | number;
  splitSize?: string | number; // MiB
  exclude?: string[];
}

export interface Config {
  backupDir: string;
  /** BACKUP_DIR_ID (written by `init`): the backup directory must hold the marker with this id */
  backupDirId?: string;
  dbPath: string;
  storagePath: string;
  maxBackups: number;
  /**
   * What `rotate` and `create --rotate` keep. Without any keep-daily/weekly/monthly/yearly setting it is
   * the newest maxBackups per type; with one, maxBackups applies only when it was set explicitly.
   */
  retention: { keepLast?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number; keepYearly?: number };
  compression: string;
  compressionLevel?: number;
  /** bytes; undefined = no splitting */
  splitSize?: number;
  exclude: string[];
  /** process environment merged with the .env file (real environment wins) */
  env: Record<string, string | undefined>;
  /** the raw config file, for sections owned by other modules (remotes, notifications) */
  file: Record<string, unknown>;
  configFile?: string;
  /** things the operator should hear about once, printed by the CLI */
  warnings: string[];
  /** DATABASE_URL=postgresql://…: the databases are PostgreSQL's (see sources/postgres.ts), not the SQLite file */
  postgres?: PostgresSettings;
}

export const DEFAULTS = {
  dbPath: './app_data/app_data.db',
  storagePath: './storage',
  backupDir: './backups',
  maxBackups: 7,
  compression: 'gzip',
};

/** Config file keys and the environment variable each one mirrors. */
const FILE_KEYS: Record<string, string> = {
  backupDir: 'BACKUP_DIR',
  backupDirId: 'BACKUP_DIR_ID',
  databasePath: 'DATABASE_PATH',
  databaseUrl: 'DATABASE_URL',
  storagePath: 'STORAGE_PATH',
  maxBackups: 'MAX_BACKUPS',
  keepDaily: 'KEEP_DAILY',
  keepWeekly: 'KEEP_WEEKLY',
  keepMonthly: 'KEEP_MONTHLY',
  keepYearly: 'KEEP_YEARLY',
  compression: 'BACKUP_COMPRESSION',
  compressionLevel: 'BACKUP_COMPRESSION_LEVEL',
  splitSizeMb: 'BACKUP_SPLIT_SIZE_MB',
  exclude: 'BACKUP_EXCLUDE',
  telegramBotToken: 'TELEGRAM_BOT_TOKEN',
  telegramChatId: 'TELEGRAM_CHAT_ID',
  telegramApiUrl: 'TELEGRAM_API_URL',
  notifyOn: 'NOTIFY_ON',
  notifyWebhookUrl: 'NOTIFY_WEBHOOK_URL',
  healthcheckUrl: 'HEALTHCHECK_URL',
  uptimeKumaUrl: 'UPTIME_KUMA_URL',
  remotesConfig: 'REMOTES_CONFIG',
  rtoTarget: 'RTO_TARGET',
  metricsFile: 'METRICS_FILE',
  rpoTarget: 'RPO_TARGET',
  databases: 'PG_DATABASES',
  pgBinDir: 'PG_BIN_DIR',
  pgDumpContainer: 'PG_DUMP_CONTAINER',
  volumeRead: 'VOLUME_READ',
  volumeHelperImage: 'VOLUME_HELPER_IMAGE',
  volumeMirrorDir: 'VOLUME_MIRROR_DIR',
};

/**
 * The `schedule` and `notify` sections stand for environment variables, so every module that reads
 * the variable honours the file too; the environment (and .env) wins.
 */
const NOTIFY_SECTION_KEYS: Record<string, string> = {
  on: 'NOTIFY_ON',
  telegramBotToken: 'TELEGRAM_BOT_TOKEN',
  telegramChatId: 'TELEGRAM_CHAT_ID',
  telegramApiUrl: 'TELEGRAM_API_URL',
  webhookUrl: 'NOTIFY_WEBHOOK_URL',
  healthcheckUrl: 'HEALTHCHECK_URL',
  uptimeKumaUrl: 'UPTIME_KUMA_URL',
  timeoutMs: 'NOTIFY_TIMEOUT_MS',
  retries: 'NOTIFY_RETRIES',
  retryDelayMs: 'NOTIFY_RETRY_DELAY_MS',
  hostname: 'NOTIFY_HOSTNAME',
};
const SCHEDULE_JOBS = ['database', 'storage', 'full', 'rotation', 'drill'];

/** The known name closest to a typo (edit distance), when one is close enough to be a plausible fix. */
export function nearest(word: string, known: string[]): string | undefined {
  const d = (a: string, b: string) => {
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let prev = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const cur = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1].toLowerCase() === b[j - 1].toLowerCase() ? 0 : 1));
        prev = cur;
      }
    }
    return row[b.length];
  };
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const n = d(word, k);
    if (n < bestD) [best, bestD] = [k, n];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

// messages say what a value must be; the key is put in front once the issue knows its path
// a section value stands for an environment variable: it must be something a variable can hold
const scalar = v.union([v.string(), v.number(), v.boolean()], 'must be a string, number or boolean');
const optionalScalar = v.optional(scalar);
const NotifySectionSchema = v.strictObject(Object.fromEntries(Object.keys(NOTIFY_SECTION_KEYS).map((k) => [k, optionalScalar])), 'must be an object');
const ScheduleJobSchema = v.strictObject({ schedule: optionalScalar, enabled: optionalScalar });
const ScheduleSectionSchema = v.strictObject(
  {
    ...Object.fromEntries(
      SCHEDULE_JOBS.map((job) => [job, v.optional(v.union([v.string(), ScheduleJobSchema], 'must be a cron expression or { "schedule", "enabled" }'))]),
    ),
    misfireGrace: optionalScalar,
  },
  'must be an object',
);
/** The config file: top-level keys mirror variables (their values are checked where the variable is read). */
const ConfigFileSchema = v.strictObject(
  {
    ...Object.fromEntries(Object.keys(FILE_KEYS).map((k) => [k, v.optional(v.unknown())])),
    remotes: v.optional(v.unknown()), // read by the remotes module
    hooks: v.optional(v.unknown()), // read by ops/hooks.ts
    volumes: v.optional(v.unknown()), // Docker volumes, read by sources/volume.ts
    serve: v.optional(v.unknown()), // `serve`: token hashes, read by api/tokens.ts
    schedule: v.optional(ScheduleSectionSchema),
    notify: v.optional(NotifySectionSchema),
  },
  'must hold a JSON object',
);
/** The keys known at each level, for "did you mean". */
const KNOWN_KEYS: Record<string, string[]> = {
  '': Object.keys(ConfigFileSchema.entries),
  'notify.': Object.keys(NotifySectionSchema.entries),
  'schedule.': Object.keys(ScheduleSectionSchema.entries),
  ...Object.fromEntries(SCHEDULE_JOBS.map((job) => [`schedule.${job}.`, Object.keys(ScheduleJobSchema.entries)])),
};

type Issue = v.BaseIssue<unknown>;
/** The issue to report: inside a union (a schedule job), the one of the object form when it has an unknown key. */
function innermost(issue: Issue): { issue: Issue; prefix: string } {
  const prefix = issue.path?.length ? `${v.getDotPath(issue)}.` : '';
  const nested = issue.type === 'union' ? issue.issues?.find((i) => i.type === 'strict_object' && i.expected === 'never') : undefined;
  return nested ? { issue: nested, prefix } : { issue, prefix: '' };
}

function configProblem(file: string, raw: Issue) {
  const { issue, prefix } = innermost(raw);
  if (issue.type === 'strict_object' && issue.expected === 'never' && issue.path?.length) {
    const key = String(issue.path[issue.path.length - 1].key);
    const where =
      prefix +
      issue.path
        .slice(0, -1)
        .map((p) => `${String(p.key)}.`)
        .join('');
    const known = KNOWN_KEYS[where] ?? [];
    const near = nearest(key, known);
    return usageError(
      `config file ${file}: unknown key '${where}${key}'${near ? ` (did you mean '${where}${near}'?)` : ''}`,
      `known keys${where ? ` in ${where.slice(0, -1)}` : ''}: ${known.join(', ')}`,
    );
  }
  return usageError(issue.path?.length ? `config file ${file}: '${v.getDotPath(issue)}' ${issue.message}` : `config file ${file} ${issue.message}`);
}

type ConfigFile = v.InferOutput<typeof ConfigFileSchema>;

/** The `notify` and `schedule` sections as the environment variables they stand for. */
function sectionEnv(obj: ConfigFile): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, value] of Object.entries(obj.notify ?? {})) if (value !== undefined) env[NOTIFY_SECTION_KEYS[k]] = String(value);
  for (const [k, value] of Object.entries(obj.schedule ?? {})) {
    if (value === undefined) continue;
    if (k === 'misfireGrace') env.BACKUP_MISFIRE_GRACE = String(value);
    else if (typeof value === 'object') {
      const job = value as v.InferOutput<typeof ScheduleJobSchema>;
      if (job.schedule !== undefined) env[`BACKUP_${k.toUpperCase()}_SCHEDULE`] = String(job.schedule);
      if (job.enabled !== undefined) env[`BACKUP_${k.toUpperCase()}_ENABLED`] = String(job.enabled);
    } else env[`BACKUP_${k.toUpperCase()}_SCHEDULE`] = String(value);
  }
  return env;
}

export function loadEnvFile(file: string, required: boolean): Record<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return {};
    if (code === 'ENOENT') throw usageError(`env file not found: ${file} (--env-file)`, 'fix the path, or create the file (it may be empty)');
    throw usageError(`cannot read env file ${file}: ${(err as Error).message}`);
  }
  return parseEnv(withoutBom(text)) as Record<string, string>;
}

/**
 * The secrets this tool itself reads. The application's own `.env` often sits in the same directory
 * with its SECRET_KEY and the like: those are the application's business, so they only earn a warning.
 */
const TOOL_SECRET_VARS = new Set([
  'TELEGRAM_BOT_TOKEN',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'SFTP_PASSWORD',
  'WEBDAV_PASSWORD',
  'YANDEX_DISK_TOKEN',
  'NOTIFY_WEBHOOK_URL',
  'HEALTHCHECK_URL',
  'UPTIME_KUMA_URL',
]);
export const isToolSecret = (name: string) => TOOL_SECRET_VARS.has(name) || (/^(BACKUP|VERTEX_BACKUP)_/.test(name) && isSecretName(name));

function envFileWarnings(file: string, dotenv: Record<string, string>): string[] {
  if (process.platform === 'win32') return [];
  const others = Object.keys(dotenv).filter((k) => isSecretName(k) && !isToolSecret(k));
  if (!others.length) return [];
  const mode = (fs.statSync(file, { throwIfNoEntry: false })?.mode ?? 0) & 0o777;
  if (!(mode & 0o077)) return [];
  return [
    `${file} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}) and holds ${others.join(', ')}; vertex-backup does not use ${others.length > 1 ? 'them' : 'it'}, but consider: chmod 600 ${file}`,
  ];
}

function readConfigFile(file: string): { obj: Record<string, unknown>; env: Record<string, string> } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(withoutBom(text));
  } catch (err) {
    throw usageError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = v.safeParse(ConfigFileSchema, data, { abortEarly: true });
  if (!parsed.success) throw configProblem(file, parsed.issues[0]);
  const obj = data as Record<string, unknown>;
  const fromSections = sectionEnv(parsed.output);
  // keys count under their variable's name too (telegramBotToken is TELEGRAM_BOT_TOKEN), and so do the
  // sections' keys; a URL with a password in it (databaseUrl, a webhook) is as secret as a token
  const byVariable = Object.fromEntries(Object.entries(obj).map(([k, v]) => [FILE_KEYS[k] ?? k, v]));
  const found = [registerSecretsIn(byVariable), registerSecretsIn(fromSections)];
  checkSecretFileMode(file, found.some(Boolean));
  return { obj, env: fromSections };
}

/** Accepts `sqlite:///abs/path`, SQLAlchemy's `sqlite:////abs` and `sqlite:///./rel`, or a plain path. */
export function parseDatabaseUrl(url: string, name = 'DATABASE_URL'): string {
  if (!url.includes('://')) return url;
  const m = /^sqlite(?:3)?:\/\/(.*)$/i.exec(url);
  if (!m) {
    throw usageError(
      `${name} is not a SQLite URL: ${url.replace(/\/\/[^/\s]*@/, '//***@')}`,
      'vertex-backup backs up SQLite databases: use sqlite:///path/to/app.db or a plain path',
    );
  }
  let rest = m[1].split('?')[0];
  if (rest.startsWith('//')) rest = rest.slice(1);
  else if (rest.startsWith('/./') || rest.startsWith('/../')) rest = rest.slice(1);
  if (!rest || rest === '/') throw usageError(`${name} names no database file: ${url}`);
  return rest;
}

function parseIntIn(value: string | number, name: string, min: number, max: number): number {
  const s = String(value).trim();
  const n = Number(s);
  if (!/^-?\d+$/.test(s) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw usageError(`${name} must be a whole number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

function parseNumberIn(value: string | number, name: string, min: number, max: number): number {
  const s = String(value).trim();
  const n = Number(s);
  if (s === '' || !Number.isFinite(n) || n < min || n > max) {
    throw usageError(`${name} must be a number from ${min} to ${max}, got '${value}'`);
  }
  return n;
}

/** Picks the first set value in priority order and remembers which source it came from. */
function pick(...sources: [string, unknown][]): { value: string | number | undefined; from: string } {
  for (const [from, v] of sources) {
    if (v !== undefined && v !== null && v !== '') return { value: v as string | number, from };
  }
  return { value: undefined, from: '' };
}

export function resolveConfig(flags: ConfigFlags, processEnv: Record<string, string | undefined> = process.env, cwd = process.cwd()): Config {
  const dotenv = flags.envFile ? loadEnvFile(path.resolve(cwd, flags.envFile), true) : loadEnvFile(path.join(cwd, '.env'), false);
  const configFile = flags.config ?? processEnv.VERTEX_BACKUP_CONFIG ?? dotenv.VERTEX_BACKUP_CONFIG;
  const read = configFile ? readConfigFile(path.resolve(cwd, configFile)) : { obj: {}, env: {} };
  const file = read.obj;
  const env: Record<string, string | undefined> = { ...read.env, ...dotenv, ...processEnv };
  registerSecretsFromEnv(env);
  const envFile = flags.envFile ? path.resolve(cwd, flags.envFile) : path.join(cwd, '.env');
  checkSecretFileMode(envFile, Object.keys(dotenv).filter(isToolSecret));
  const warnings = envFileWarnings(envFile, dotenv);

  const fileKey = (k: string): [string, unknown] => [`config key '${k}'`, file[k]];

  const dbUrl = pick(['DATABASE_URL', env.DATABASE_URL], fileKey('databaseUrl'));
  const pgUrl = dbUrl.value !== undefined && isPostgresUrl(String(dbUrl.value)) ? String(dbUrl.value) : undefined;
  const postgres = pgUrl
    ? parsePostgresUrl(pgUrl, {
        from: dbUrl.from,
        databases: (env.PG_DATABASES ?? file.databases) as string | string[] | undefined,
        binDir: String(pick(['PG_BIN_DIR', env.PG_BIN_DIR], fileKey('pgBinDir')).value ?? ''),
        container: String(pick(['PG_DUMP_CONTAINER', env.PG_DUMP_CONTAINER], fileKey('pgDumpContainer')).value ?? ''),
        env,
      })
    : undefined;
  if (postgres) warnings.push(...postgres.warnings);
  const dbRaw = pick(
    ['--db-path', flags.dbPath],
    ['DATABASE_PATH', env.DATABASE_PATH],
    ['DATABASE_URL', dbUrl.value !== undefined && !pgUrl ? parseDatabaseUrl(String(dbUrl.value), dbUrl.from) : undefined],
    fileKey('databasePath'),
  );
  const str = (p: { value: unknown }, def: string) => String(p.value ?? def);

  const maxB = pick(['--keep-last', flags.keepLast], ['--max-backups', flags.maxBackups], ['MAX_BACKUPS', env.MAX_BACKUPS], fileKey('maxBackups'));
  const gfs = (['Daily', 'Weekly', 'Monthly', 'Yearly'] as const).map((p) => {
    const v = pick([`--keep-${p.toLowerCase()}`, flags[`keep${p}`]], [`KEEP_${p.toUpperCase()}`, env[`KEEP_${p.toUpperCase()}`]], fileKey(`keep${p}`));
    return v.value === undefined ? undefined : parseIntIn(v.value, v.from, 0, 100000);
  });
  const maxBackups = maxB.value === undefined ? DEFAULTS.maxBackups : parseIntIn(maxB.value, maxB.from, maxB.from === '--keep-last' ? 0 : 1, 100000);
  const anyGfs = gfs.some((n) => n !== undefined && n > 0);
  const comp = pick(['--compression', flags.compression], ['BACKUP_COMPRESSION', env.BACKUP_COMPRESSION], fileKey('compression'));
  const level = pick(['--compression-level', flags.compressionLevel], ['BACKUP_COMPRESSION_LEVEL', env.BACKUP_COMPRESSION_LEVEL], fileKey('compressionLevel'));
  const split = pick(['--split-size', flags.splitSize], ['BACKUP_SPLIT_SIZE_MB', env.BACKUP_SPLIT_SIZE_MB], fileKey('splitSizeMb'));

  const compression = str(comp, DEFAULTS.compression).toLowerCase();
  try {
    getCodec(compression);
  } catch (err) {
    throw usageError(`${comp.from || 'compression'}: ${(err as BackupError).message}`, (err as BackupError).hint);
  }
  const splitMb = split.value === undefined ? 0 : parseNumberIn(split.value, split.from, 0, 1024 * 1024);

  const fileExclude = Array.isArray(file.exclude) ? (file.exclude as unknown[]).map(String) : [];
  const envExclude = env.BACKUP_EXCLUDE
    ? env.BACKUP_EXCLUDE.split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];

  const resolve = (p: string) => path.resolve(cwd, p);
  const backupDirPick = pick(['--backup-dir', flags.backupDir], ['BACKUP_DIR', env.BACKUP_DIR], fileKey('backupDir'));
  const backupDir = resolve(str(backupDirPick, DEFAULTS.backupDir));
  const notADir = (what: string) =>
    usageError(
      `backup directory ${backupDir} (${backupDirPick.from || 'default'}) ${what}`,
      'set the backup directory (BACKUP_DIR) to a directory (it is created when missing)',
      'backup-dir-set',
    );
  let backupDirStat: fs.Stats | undefined;
  try {
    backupDirStat = fs.statSync(backupDir, { throwIfNoEntry: false });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw notADir('is under a file, not a directory');
    // anything else (EACCES…) is reported by the command that uses the directory
  }
  if (backupDirStat && !backupDirStat.isDirectory()) throw notADir('is not a directory');
  const dirId = pick(['BACKUP_DIR_ID', env.BACKUP_DIR_ID], fileKey('backupDirId')).value;
  return {
    backupDir,
    backupDirId: dirId === undefined || dirId === '' ? undefined : String(dirId),
    dbPath: resolve(str(dbRaw, DEFAULTS.dbPath)),
    storagePath: resolve(str(pick(['--storage-path', flags.storagePath], ['STORAGE_PATH', env.STORAGE_PATH], fileKey('storagePath')), DEFAULTS.storagePath)),
    maxBackups,
    retention: {
      keepLast: anyGfs && maxB.value === undefined ? undefined : maxBackups,
      keepDaily: gfs[0],
      keepWeekly: gfs[1],
      keepMonthly: gfs[2],
      keepYearly: gfs[3],
    },
    compression,
    compressionLevel:
      level.value === undefined ? undefined : parseIntIn(level.value, level.from, compression === 'zstd' ? 1 : 0, compression === 'zstd' ? 19 : 9),
    splitSize: splitMb > 0 ? Math.max(1, Math.round(splitMb * 1024 * 1024)) : undefined,
    exclude: flags.exclude?.length ? flags.exclude : envExclude.length ? envExclude : fileExclude,
    env,
    file,
    configFile: configFile ? resolve(configFile) : undefined,
    warnings,
    postgres,
  };
}
