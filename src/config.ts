import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseEnv } from 'node:util';
import { getCodec } from './codec/registry.js';
import { BackupError, usageError } from './errors.js';
import { isSecretName, registerSecretsFromEnv, registerSecretsIn } from './secrets.js';

/** What the user can pass as flags; anything unset falls through to env, the config file, defaults. */
export interface ConfigFlags {
  backupDir?: string;
  dbPath?: string;
  storagePath?: string;
  config?: string;
  envFile?: string;
  maxBackups?: string | number;
  compression?: string;
  compressionLevel?: string | number;
  splitSize?: string | number; // MiB
  exclude?: string[];
}

export interface Config {
  backupDir: string;
  dbPath: string;
  storagePath: string;
  maxBackups: number;
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
  databasePath: 'DATABASE_PATH',
  databaseUrl: 'DATABASE_URL',
  storagePath: 'STORAGE_PATH',
  maxBackups: 'MAX_BACKUPS',
  compression: 'BACKUP_COMPRESSION',
  compressionLevel: 'BACKUP_COMPRESSION_LEVEL',
  splitSizeMb: 'BACKUP_SPLIT_SIZE_MB',
  exclude: 'BACKUP_EXCLUDE',
  telegramBotToken: 'TELEGRAM_BOT_TOKEN',
  telegramChatId: 'TELEGRAM_CHAT_ID',
  notifyOn: 'NOTIFY_ON',
  notifyWebhookUrl: 'NOTIFY_WEBHOOK_URL',
  healthcheckUrl: 'HEALTHCHECK_URL',
  remotesConfig: 'REMOTES_CONFIG',
};
// sections other modules read from the file as they are
const FILE_SECTIONS = new Set(['remotes', 'schedule', 'notify']);

export function loadEnvFile(file: string, required: boolean): Record<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw usageError(`cannot read env file ${file}: ${(err as Error).message}`);
  }
  return parseEnv(text) as Record<string, string>;
}

/**
 * A file holding a secret must be private: a token readable by every local user is a leaked token.
 */
export function checkSecretFileMode(file: string, hasSecrets: boolean): void {
  if (!hasSecrets || process.platform === 'win32') return;
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw usageError(
      `${file} holds secrets but is readable by group or others (mode ${mode.toString(8).padStart(4, '0')})`,
      `run: chmod 600 ${file}`,
    );
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usageError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw usageError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw usageError(`config file ${file} must hold a JSON object`);
  const obj = data as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (!(k in FILE_KEYS) && !FILE_SECTIONS.has(k)) {
      throw usageError(`config file ${file}: unknown key '${k}'`, `known keys: ${Object.keys(FILE_KEYS).join(', ')}`);
    }
  }
  // keys are checked under their variable's name too (telegramBotToken is TELEGRAM_BOT_TOKEN); a URL
  // with a password in it (databaseUrl, a webhook) is as secret as a token
  const byVariable = Object.fromEntries(Object.entries(obj).map(([k, v]) => [FILE_KEYS[k] ?? k, v]));
  checkSecretFileMode(file, registerSecretsIn(byVariable));
  return obj;
}

/** Accepts `sqlite:///abs/path`, SQLAlchemy's `sqlite:////abs` and `sqlite:///./rel`, or a plain path. */
export function parseDatabaseUrl(url: string, name = 'DATABASE_URL'): string {
  if (!url.includes('://')) return url;
  const m = /^sqlite(?:3)?:\/\/(.*)$/i.exec(url);
  if (!m) {
    throw usageError(`${name} is not a SQLite URL: ${url.replace(/\/\/[^/\s]*@/, '//***@')}`, 'vertex-backup backs up SQLite databases: use sqlite:///path/to/app.db or a plain path');
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
  const dotenv = flags.envFile
    ? loadEnvFile(path.resolve(cwd, flags.envFile), true)
    : loadEnvFile(path.join(cwd, '.env'), false);
  const env: Record<string, string | undefined> = { ...dotenv, ...processEnv };
  registerSecretsFromEnv(env);
  checkSecretFileMode(flags.envFile ? path.resolve(cwd, flags.envFile) : path.join(cwd, '.env'), Object.keys(dotenv).some(isSecretName));

  const configFile = flags.config ?? env.VERTEX_BACKUP_CONFIG;
  const file = configFile ? readConfigFile(path.resolve(cwd, configFile)) : {};
  const fileKey = (k: string): [string, unknown] => [`config key '${k}'`, file[k]];

  const dbUrl = pick(['DATABASE_URL', env.DATABASE_URL], fileKey('databaseUrl'));
  const dbRaw = pick(
    ['--db-path', flags.dbPath],
    ['DATABASE_PATH', env.DATABASE_PATH],
    ['DATABASE_URL', dbUrl.value !== undefined ? parseDatabaseUrl(String(dbUrl.value), dbUrl.from) : undefined],
    fileKey('databasePath'),
  );
  const str = (p: { value: unknown }, def: string) => String(p.value ?? def);

  const maxB = pick(['--max-backups', flags.maxBackups], ['MAX_BACKUPS', env.MAX_BACKUPS], fileKey('maxBackups'));
  const comp = pick(['--compression', flags.compression], ['BACKUP_COMPRESSION', env.BACKUP_COMPRESSION], fileKey('compression'));
  const level = pick(
    ['--compression-level', flags.compressionLevel],
    ['BACKUP_COMPRESSION_LEVEL', env.BACKUP_COMPRESSION_LEVEL],
    fileKey('compressionLevel'),
  );
  const split = pick(['--split-size', flags.splitSize], ['BACKUP_SPLIT_SIZE_MB', env.BACKUP_SPLIT_SIZE_MB], fileKey('splitSizeMb'));

  const compression = str(comp, DEFAULTS.compression).toLowerCase();
  try {
    getCodec(compression);
  } catch (err) {
    throw usageError(`${comp.from || 'compression'}: ${(err as BackupError).message}`, (err as BackupError).hint);
  }
  const splitMb = split.value === undefined ? 0 : parseNumberIn(split.value, split.from, 0, 1024 * 1024);

  const fileExclude = Array.isArray(file.exclude) ? (file.exclude as unknown[]).map(String) : [];
  const envExclude = env.BACKUP_EXCLUDE ? env.BACKUP_EXCLUDE.split(',').map((s) => s.trim()).filter(Boolean) : [];

  const resolve = (p: string) => path.resolve(cwd, p);
  const backupDirPick = pick(['--backup-dir', flags.backupDir], ['BACKUP_DIR', env.BACKUP_DIR], fileKey('backupDir'));
  const backupDir = resolve(str(backupDirPick, DEFAULTS.backupDir));
  const notADir = (what: string) =>
    usageError(`backup directory ${backupDir} (${backupDirPick.from || 'default'}) ${what}`, 'set --backup-dir or BACKUP_DIR to a directory (it is created when missing)');
  let backupDirStat: fs.Stats | undefined;
  try {
    backupDirStat = fs.statSync(backupDir, { throwIfNoEntry: false });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw notADir('is under a file, not a directory');
    // anything else (EACCES…) is reported by the command that uses the directory
  }
  if (backupDirStat && !backupDirStat.isDirectory()) throw notADir('is not a directory');
  return {
    backupDir,
    dbPath: resolve(str(dbRaw, DEFAULTS.dbPath)),
    storagePath: resolve(str(pick(['--storage-path', flags.storagePath], ['STORAGE_PATH', env.STORAGE_PATH], fileKey('storagePath')), DEFAULTS.storagePath)),
    maxBackups: maxB.value === undefined ? DEFAULTS.maxBackups : parseIntIn(maxB.value, maxB.from, 1, 100000),
    compression,
    compressionLevel: level.value === undefined ? undefined : parseIntIn(level.value, level.from, compression === 'zstd' ? 1 : 0, compression === 'zstd' ? 19 : 9),
    splitSize: splitMb > 0 ? Math.max(1, Math.round(splitMb * 1024 * 1024)) : undefined,
    exclude: flags.exclude?.length ? flags.exclude : envExclude.length ? envExclude : fileExclude,
    env,
    file,
    configFile: configFile ? resolve(configFile) : undefined,
  };
}
