import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ManifestFile, ManifestInfo } from '../archive/manifest.js';
import { PartWriter } from '../archive/parts.js';
import type { Config } from '../config.js';
import { AGE_EXTENSION, encryptStage } from '../crypto/age-artifact.js';
import type { Recipient } from '../crypto/age-keys.js';
import { loadIdentities } from '../crypto/age-settings.js';
import type { Sidecar } from '../catalog/sidecar.js';
import { sha256File } from '../fsutil.js';
import { manifestKey } from './file-manifest.js';

/**
 * The file manifest of an encrypted storage backup (`create --encrypt`) is encrypted too
 * (`….manifest.gz.age`): the backup directory shows no file names. The next incremental backup must
 * still compare the live tree with the previous one, with only the public key at hand; so create keeps
 * the plaintext manifests of the current chain on the machine being backed up, outside the backup
 * directory (`$VERTEX_BACKUP_STATE_DIR`, else systemd's `$STATE_DIRECTORY`, else
 * `$XDG_STATE_HOME/vertex-backup`, else `~/.local/state/vertex-backup`): they name files that machine holds anyway. Without that copy (a new
 * machine, a wiped state directory) the identity (AGE_IDENTITY_FILE) reads the encrypted one, and
 * without either the next backup starts a new chain.
 */
export function manifestCacheDir(cfg: Pick<Config, 'backupDir' | 'env'>): string {
  const env = cfg.env;
  const base =
    env.VERTEX_BACKUP_STATE_DIR ||
    // systemd's StateDirectory= (the shipped units): writable under ProtectSystem=strict and ProtectHome=yes
    env.STATE_DIRECTORY?.split(':')[0] ||
    (env.XDG_STATE_HOME ? path.join(env.XDG_STATE_HOME, 'vertex-backup') : path.join(env.HOME || os.homedir(), '.local', 'state', 'vertex-backup'));
  return path.join(base, 'manifests', createHash('sha256').update(path.resolve(cfg.backupDir)).digest('hex').slice(0, 16));
}

/** Where the manifest writer writes the plaintext: the cache directory (created 0700), or undefined if it cannot be made. */
export async function plaintextManifestDir(cfg: Pick<Config, 'backupDir' | 'env'>): Promise<string | undefined> {
  const dir = manifestCacheDir(cfg);
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    return dir;
  } catch {
    return undefined;
  }
}

/**
 * Encrypts the committed plaintext manifest `plain` into `<dir>/<its name>.age`: what the sidecar's
 * `manifest` then says (the ciphertext's size and checksum, the plaintext's in `encryption`).
 */
export async function encryptManifest(
  plain: string,
  info: ManifestInfo,
  dir: string,
  recipients: Recipient[],
): Promise<{ manifest: NonNullable<Sidecar['manifest']>; files: string[] }> {
  const name = `${info.file}${AGE_EXTENSION}`;
  const writer = new PartWriter(dir, name);
  const stage = await encryptStage(recipients);
  try {
    await pipeline(createReadStream(plain), stage.stream, writer);
    const written = await writer.commit();
    return {
      manifest: { file: name, size: written.size, checksum: written.checksum, entries: info.entries, encryption: stage.info() },
      files: written.files,
    };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

/** Keeps only the plaintext manifests of `chain` in the cache directory. */
export async function pruneManifestCache(dir: string, chain: string[]): Promise<void> {
  const keep = new Set(chain.map((id) => `storage_backup_${id}.manifest.gz`));
  for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
    if (!keep.has(name)) await fsp.rm(path.join(dir, name), { force: true, recursive: true }).catch(() => {});
  }
}

/**
 * How create reads an encrypted manifest of the previous chain: the cached plaintext when its checksum
 * is the one the sidecar records, else through age with the configured identity; undefined when
 * neither is at hand.
 */
export async function previousEncryptedManifest(cfg: Pick<Config, 'backupDir' | 'env'>, file: string, s: Sidecar): Promise<ManifestFile | undefined> {
  const m = s.manifest!;
  const cached = path.join(manifestCacheDir(cfg), m.file.slice(0, -AGE_EXTENSION.length));
  const got = await sha256File(cached).catch(() => undefined);
  if (got && got.checksum === m.encryption?.plaintext_checksum) return { file: cached };
  const identities = await loadIdentities({}, cfg.env).catch(() => []);
  if (!identities.length) return undefined;
  return { file, checksum: m.checksum, key: manifestKey(s, identities) };
}
