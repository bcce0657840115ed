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
}
