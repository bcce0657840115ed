import * as path from 'node:path';
import { getCodecOrUndefined } from '../codec/registry.js';
import { ID_PATTERN } from './names.js';

export const SIDECAR_FORMAT = 1;

export type BackupType = 'database' | 'storage' | 'full';
export const BACKUP_TYPES: readonly BackupType[] = ['full', 'database', 'storage'];

export interface PartInfo {
  file: string; // file name, relative to the sidecar's directory
  size: number;
  checksum: string; // sha256 hex
}

export interface SqliteInfo {
  page_size: number;
  page_count: number;
  journal_mode: string; // the source database's journal mode
  integrity: string; // result of PRAGMA integrity_check on the copy ('ok')
  tables: number; // tables in the copy: a copy with none is not a backup
}

/**
 * An encrypted artifact (`….age`): `file_size`/`checksum`/`parts` describe the ciphertext on disk (so a
 * keyless verify proves the bytes intact); these fields describe the plaintext, checked with a key.
 */
export interface EncryptionInfo {
  format: 'age';
  /** public recipients (`age1…`) or 'passphrase (scrypt)': never a secret */
  recipients: string[];
  plaintext_size: number;
  plaintext_checksum?: string;
}

/** The sidecar JSON: written last, atomically; its presence and validity commit a backup. */
export interface Sidecar {
  format: number;
  tool: { name: string; version: string };
  id: string;
  type: BackupType;
  timestamp: string; // the id's YYYYMMDD_HHMMSS part
  created_at: string; // ISO 8601
  duration_ms: number;
  original_path?: string;
  backup_path?: string; // relative to the sidecar; for split archives the name without .partNNN
  file_size?: number;
  checksum?: string; // sha256 of the whole artifact (the concatenation of the parts)
  compression?: string;
  file_count?: number; // storage: regular files archived
  entry_count?: number; // storage: every tar entry (files, directories, symlinks)
  content_bytes?: number; // storage: bytes of file content before compression
  exclude?: string[];
  parts?: PartInfo[];
  sqlite?: SqliteInfo;
  encryption?: EncryptionInfo;
  // full only
  database?: string | null; // id of the database component
  storage?: string | null; // id of the storage component
  status?: 'ok' | 'partial';
  errors?: string[];
  warnings?: string[];
  /** storage: paths that could not be read (permissions) and are not in the archive */
  skipped?: { path: string; error: string }[];
  /** storage: what was left out on purpose, said once (the backup directory inside the tree) */
  notes?: string[];
  // incremental storage backups (see catalog/chain.ts and archive/manifest.ts)
  /** 0: the archive holds every file; N: only what changed since `previous` */
  level?: number;
  /** the level-0 backup the chain starts from */
  base?: string;
  /** the backup this one was compared with (level > 0) */
  previous?: string;
  /** the file manifest: every path of the tree and the backup whose archive holds it */
  manifest?: { file: string; size: number; checksum: string; entries: number };
  /** ids of the storage backups whose archives the manifest references, oldest first (itself included) */
  references?: string[];
  /** bytes of file content the manifest takes from each referenced backup */
  referenced_bytes?: Record<string, number>;
  /** files and bytes of the whole tree the manifest describes */
  tree_files?: number;
  tree_bytes?: number;
}

/** Parses and checks the fields a sidecar must have; returns the reason it is unusable, if any. */
export function validateSidecar(data: unknown, type: BackupType, id: string): string | undefined {
  if (!data || typeof data !== 'object') return 'metadata is not a JSON object';
  const s = data as Partial<Sidecar>;
  if (s.format !== SIDECAR_FORMAT) return `unknown metadata format ${JSON.stringify(s.format)}`;
  if (s.type !== type) return `metadata type '${s.type}' does not match its directory '${type}'`;
  if (s.id !== id) return `metadata id '${s.id}' does not match its file name`;
  if (type === 'full') {
    if (s.status !== 'ok' && s.status !== 'partial') return 'metadata has no valid status';
    return undefined;
  }
  if (typeof s.backup_path !== 'string' || typeof s.checksum !== 'string' || typeof s.file_size !== 'number') {
    return 'metadata lacks backup_path, checksum or file_size';
  }
  // one backup written by a newer tool (or edited) is damaged for us; it must not stop the others
  if (s.compression !== undefined && (typeof s.compression !== 'string' || !getCodecOrUndefined(s.compression))) {
    return `unknown compression ${JSON.stringify(s.compression)}`;
  }
  if (s.parts !== undefined && (!Array.isArray(s.parts) || s.parts.some((p) => typeof p?.file !== 'string' || typeof p?.size !== 'number' || typeof p?.checksum !== 'string'))) {
    return 'metadata has malformed parts';
  }
  // every part lies beside its sidecar: a name with a directory part could lead anywhere (backup_path is
  // only ever used by its base name, which seed sidecars with absolute paths rely on)
  const outside = (s.parts ?? []).map((p) => p.file).find((f) => !isPlainFileName(f));
  if (outside !== undefined) return `metadata names ${JSON.stringify(outside)}, which is not a file in its own directory`;
  if (s.manifest !== undefined) {
    const m = s.manifest;
    if (!m || typeof m.file !== 'string' || typeof m.size !== 'number' || typeof m.checksum !== 'string') return 'metadata has a malformed manifest';
    if (!isPlainFileName(m.file)) return `metadata names ${JSON.stringify(m.file)}, which is not a file in its own directory`;
  }
  if (s.references !== undefined && (!Array.isArray(s.references) || s.references.some((r) => typeof r !== 'string' || !ID_PATTERN.test(r)))) {
    return 'metadata has malformed references';
  }
  return undefined;
}

function isPlainFileName(f: string): boolean {
  return f !== '' && f !== '.' && f !== '..' && !f.includes('/') && !f.includes('\\') && !f.includes('\0');
}

/** The data files a sidecar names, relative to its directory. */
export function artifactFiles(s: Sidecar): { file: string; size: number; checksum: string }[] {
  if (s.parts?.length) return s.parts;
  if (!s.backup_path) return [];
  return [{ file: path.basename(s.backup_path), size: s.file_size ?? 0, checksum: s.checksum ?? '' }];
}

/** A sidecar's text parsed and checked: the sidecar, or why it is unusable. */
export function parseSidecar(text: string, type: BackupType, id: string): { sidecar?: Sidecar; error?: string } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { error: 'metadata is not valid JSON' };
  }
  const error = validateSidecar(data, type, id);
  return error ? { error } : { sidecar: data as Sidecar };
}
