import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as v from 'valibot';
import { BackupError, usageError } from '../errors.js';
import { withoutBom } from '../fsutil.js';
import { maskUrl, registerSecretsIn } from '../secrets.js';

/**
 * remote_storage.json: named remotes. The native form is
 *   { "remotes": { "nas": { "url": "file:///mnt/nas/backups" },
 *                  "offsite": { "url": "s3://bucket/prefix", "endpoint": "https://…", "region": "…",
 *                               "force_path_style": true, "access_key_id": "…", "secret_access_key": "…" } } }
 * and the seed's top-level provider blocks are understood too:
 *   { "yandex_disk": { "enabled": true, "oauth_token": "…", "remote_path": "/vertex-backups" } }
 */
const RemoteEntrySchema = v.union([v.string(), v.looseObject({ url: v.string() })]);
/** The file's shape; seed provider blocks are any other top-level objects (see fromSeedBlock). */
const RemotesFileSchema = v.looseObject({ remotes: v.optional(v.record(v.string(), RemoteEntrySchema)) });

export interface RemoteDefinition {
  name: string;
  url: string;
  enabled: boolean;
  options: Record<string, unknown>; // everything but url/enabled, secrets included
}

export interface RemotesConfig {
  file: string | null; // null when no config file exists
  remotes: RemoteDefinition[];
  warnings: string[];
}

export const DEFAULT_REMOTES_CONFIG = 'remote_storage.json';

export function remotesConfigPath(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(flag ?? env.REMOTES_CONFIG ?? DEFAULT_REMOTES_CONFIG);
}

/** Seed provider blocks → URL form, so the rest of the code sees one shape. */
function fromSeedBlock(name: string, block: Record<string, unknown>): RemoteDefinition | string {
  const enabled = block.enabled !== false;
  if (name === 'yandex_disk') {
    const remotePath = String(block.remote_path ?? block.path ?? '/vertex-backups').replace(/^\/*/, '');
    const { enabled: _e, remote_path: _r, path: _p, ...rest } = block;
    return { name, url: `webdavs://webdav.yandex.ru/${remotePath}`, enabled, options: rest };
  }
  return `remote "${name}": provider "${name}" is not supported (use a URL: file, s3, webdav(s), sftp, rclone, rsync)`;
}

export async function loadRemotesConfig(file: string, options: { required?: boolean } = {}): Promise<RemotesConfig> {
  let text: string;
  let mode: number;
  try {
    const fh = await fsp.open(file, 'r');
    try {
      mode = (await fh.stat()).mode;
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !options.required) {
      return { file: null, remotes: [], warnings: [] };
    }
    throw new BackupError('USAGE', `cannot read the remotes config ${file}: ${(err as Error).message}`, {
      hint: 'set REMOTES_CONFIG to the remotes file',
      remedy: 'remotes-config',
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(withoutBom(text));
  } catch (err) {
    throw usageError(`the remotes config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw usageError(`the remotes config ${file} must hold a JSON object`);
  }
  if (registerSecretsIn(raw) && (mode & 0o044) !== 0) {
    throw new BackupError(
      'USAGE',
      `the remotes config ${file} holds secrets and is readable by ${mode & 0o004 ? 'others' : 'its group'} (mode ${(mode & 0o777).toString(8)})`,
      { hint: `chmod 600 ${file}` },
    );
  }
  return parseRemotesConfig(raw as Record<string, unknown>, file);
}

/**
 * Normalises an already-read config object (the remotes file, or the "remotes" section of the main
 * config file, whose permissions its own loader checks).
 */
/**
 * The remotes every way in (the CLI, serve) works with: the remotes file (`--remotes-config`, env
 * REMOTES_CONFIG, ./remote_storage.json), or else the `remotes` section of the main config file.
 */
export async function loadConfiguredRemotes(o: {
  flag?: string;
  env: NodeJS.ProcessEnv;
  /** the main config file's `remotes` section and the file's path */
  fileRemotes?: unknown;
  configFile?: string;
}): Promise<RemotesConfig> {
  const cfg = await loadRemotesConfig(remotesConfigPath(o.flag, o.env), { required: o.flag !== undefined || o.env.REMOTES_CONFIG !== undefined });
  if (!cfg.file && o.fileRemotes && o.configFile) return parseRemotesConfig({ remotes: o.fileRemotes }, o.configFile);
  return cfg;
}

export function parseRemotesConfig(raw: Record<string, unknown>, file: string): RemotesConfig {
  // every secret in the file is redacted from whatever leaves the process from now on
  registerSecretsIn(raw);
  // a JSON array would pass as a record of its indices
  const parsed = Array.isArray(raw.remotes) ? undefined : v.safeParse(RemotesFileSchema, raw);
  if (!parsed?.success) {
    const name = parsed?.issues[0].path?.[1]?.key;
    if (typeof name === 'string') throw usageError(`${file}: remote "${name}" needs a "url" string`);
    throw usageError(`${file}: "remotes" must be an object of name → { "url": … }`);
  }
  const remotes: RemoteDefinition[] = [];
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'remotes') {
      for (const [name, def] of Object.entries(parsed.output.remotes ?? {})) {
        if (typeof def === 'string') {
          remotes.push({ name, url: def, enabled: true, options: {} });
          continue;
        }
        const { url, enabled, ...rest } = def;
        remotes.push({ name, url, enabled: enabled !== false, options: rest });
      }
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      const def = fromSeedBlock(key, value as Record<string, unknown>);
      if (typeof def === 'string') warnings.push(def);
      else remotes.push(def);
    }
  }
  return { file, remotes, warnings };
}

/** A remote by name, or an ad-hoc definition when `nameOrUrl` is a URL. */
export function resolveRemote(config: RemotesConfig, nameOrUrl: string): RemoteDefinition {
  const found = config.remotes.find((r) => r.name === nameOrUrl);
  if (found) return found;
  if (/^[a-z][a-z0-9+.-]*:/i.test(nameOrUrl) && !/^[a-z]:[\\/]/i.test(nameOrUrl)) {
    return { name: maskUrl(nameOrUrl), url: nameOrUrl, enabled: true, options: {} };
  }
  const known = config.remotes.map((r) => r.name).join(', ') || 'none';
  throw usageError(
    `unknown remote "${nameOrUrl}"${config.file ? ` in ${config.file}` : ' (no remotes config found)'}`,
    `known remotes: ${known}; or give a URL such as s3://bucket/prefix`,
  );
}
