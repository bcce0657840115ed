import * as path from 'node:path';
import * as v from 'valibot';
import { getCodecOrUndefined } from '../codec/registry.js';
import type { EncryptionInfo } from '../crypto/age-artifact.js';
import { type BackupType, ID_PATTERN } from './names.js';

export type { BackupType } from './names.js';

export const SIDECAR_FORMAT = 1;

export const BACKUP_TYPES: readonly BackupType[] = ['full', 'database', 'storage'];

const MALFORMED_PARTS = 'metadata has malformed parts';
const LACKS_ARTIFACT = 'metadata lacks backup_path, checksum or file_size';

// every file a sidecar names lies beside it: a name with a directory part could lead anywhere
// (backup_path is only ever used by its base name, which seed sidecars with absolute paths rely on)
const fileBeside = (malformed: string) =>
  v.pipe(
    v.string(malformed),
    v.check(isPlainFileName, (issue) => `metadata names ${JSON.stringify(issue.input)}, which is not a file in its own directory`),
  );

const PartSchema = v.object(
  {
    file: fileBeside(MALFORMED_PARTS),
    size: v.number(MALFORMED_PARTS),
    checksum: v.string(MALFORMED_PARTS), // sha256 hex
  },
  MALFORMED_PARTS,
);
export type PartInfo = v.InferOutput<typeof PartSchema>;

const SqliteInfoSchema = v.object({
  page_size: v.number(),
  page_count: v.number(),
  journal_mode: v.string(), // the source database's journal mode
  integrity: v.string(), // result of PRAGMA integrity_check on the copy ('ok')
  tables: v.number(), // tables in the copy: a copy with none is not a backup
  /** rows of each table of the copy at backup time: what a restore drill compares with (absent in older sidecars) */
  table_rows: v.optional(v.record(v.string(), v.number())),
});
export type SqliteInfo = v.InferOutput<typeof SqliteInfoSchema>;

/**
 * An encrypted artifact (`….age`): `file_size`/`checksum`/`parts` describe the ciphertext on disk (so a
 * keyless verify proves the bytes intact); these fields describe the plaintext, checked with a key.
 */
const EncryptionInfoSchema: v.GenericSchema<EncryptionInfo> = v.object({
  format: v.literal('age'),
  /** public recipients (`age1…`) or 'passphrase (scrypt)': never a secret */
  recipients: v.array(v.string()),
  plaintext_size: v.number(),
  plaintext_checksum: v.optional(v.string()),
});
export type { EncryptionInfo };

const MALFORMED_COMPONENTS = 'metadata has malformed components';
/** One file of a source (see sources/source.ts ComponentRecord): kind, name, role, file, size, checksum. */
const ComponentSchema = v.object(
  {
    kind: v.string(MALFORMED_COMPONENTS),
    name: v.string(MALFORMED_COMPONENTS),
    role: v.string(MALFORMED_COMPONENTS),
    file: fileBeside(MALFORMED_COMPONENTS),
    size: v.number(MALFORMED_COMPONENTS),
    checksum: v.string(MALFORMED_COMPONENTS),
    encryption: v.optional(EncryptionInfoSchema),
    info: v.optional(v.record(v.string(), v.unknown())),
  },
  MALFORMED_COMPONENTS,
);
export type ComponentInfo = v.InferOutput<typeof ComponentSchema>;

const MALFORMED_MANIFEST = 'metadata has a malformed manifest';
const MALFORMED_REFERENCES = 'metadata has malformed references';
const ManifestInfoSchema = v.object(
  {
    file: fileBeside(MALFORMED_MANIFEST),
    size: v.number(MALFORMED_MANIFEST),
    checksum: v.string(MALFORMED_MANIFEST),
    entries: v.number(MALFORMED_MANIFEST),
    /** on an encrypting remote: `file` is `….manifest.gz.age`, size and checksum the ciphertext's */
    encryption: v.optional(EncryptionInfoSchema),
  },
  MALFORMED_MANIFEST,
);

// one backup written by a newer tool (or edited) is damaged for us; it must not stop the others
const unknownCompression = (issue: { input: unknown }) => `unknown compression ${JSON.stringify(issue.input)}`;

/**
 * Fields every sidecar may carry. Required ones are only those a reader cannot do without (format,
 * id, type; status for full; the artifact for the others): tool, times and counts are informational.
 * Unknown fields are accepted and kept: a newer tool may add some.
 */
const SIDECAR_ENTRIES = {
  format: v.number(),
  tool: v.optional(v.object({ name: v.string(), version: v.string() })),
  id: v.string(),
  type: v.picklist(['database', 'storage', 'full']),
  timestamp: v.optional(v.string()), // the id's YYYYMMDD_HHMMSS part
  created_at: v.optional(v.string()), // ISO 8601
  duration_ms: v.optional(v.number()),
  original_path: v.optional(v.string()),
  backup_path: v.optional(v.string(LACKS_ARTIFACT)), // relative to the sidecar; for split archives the name without .partNNN
  checksum: v.optional(v.string(LACKS_ARTIFACT)), // sha256 of the whole artifact (the concatenation of the parts)
  file_size: v.optional(v.number(LACKS_ARTIFACT)),
  compression: v.optional(
    v.pipe(
      v.string(unknownCompression),
      v.check((c) => getCodecOrUndefined(c) !== undefined, unknownCompression),
    ),
  ),
  parts: v.optional(v.array(PartSchema, MALFORMED_PARTS)),
  file_count: v.optional(v.number()), // storage: regular files archived
  entry_count: v.optional(v.number()), // storage: every tar entry (files, directories, symlinks)
  content_bytes: v.optional(v.number()), // storage: bytes of file content before compression
  exclude: v.optional(v.array(v.string())),
  sqlite: v.optional(SqliteInfoSchema),
  /** a backup of sources (PostgreSQL databases…): one entry per stored file; file_size is their total */
  components: v.optional(v.array(ComponentSchema, MALFORMED_COMPONENTS)),
  encryption: v.optional(EncryptionInfoSchema),
  // full only
  database: v.nullish(v.string()), // id of the database component
  storage: v.nullish(v.string()), // id of the storage component
  status: v.optional(v.picklist(['ok', 'partial'], 'metadata has no valid status')),
  errors: v.optional(v.array(v.string())),
  warnings: v.optional(v.array(v.string())),
  /** storage: paths that could not be read (permissions) and are not in the archive */
  skipped: v.optional(v.array(v.object({ path: v.string(), error: v.string() }))),
  /** storage: what was left out on purpose, said once (the backup directory inside the tree) */
  notes: v.optional(v.array(v.string())),
  // incremental storage backups (see catalog/chain.ts and archive/manifest.ts)
  /** 0: the archive holds every file; N: only what changed since `previous` */
  level: v.optional(v.number()),
  /** the level-0 backup the chain starts from */
  base: v.optional(v.string()),
  /** the backup this one was compared with (level > 0) */
  previous: v.optional(v.string()),
  /** the file manifest: every path of the tree and the backup whose archive holds it */
  manifest: v.optional(ManifestInfoSchema),
  /** ids of the storage backups whose manifests make up its file list: its base, each level up to itself */
  chain: v.optional(v.array(v.pipe(v.string(MALFORMED_REFERENCES), v.regex(ID_PATTERN, MALFORMED_REFERENCES)), MALFORMED_REFERENCES)),
  /** ids of the storage backups it needs, oldest first (itself included): whose archives hold its files, and its chain */
  references: v.optional(v.array(v.pipe(v.string(MALFORMED_REFERENCES), v.regex(ID_PATTERN, MALFORMED_REFERENCES)), MALFORMED_REFERENCES)),
  /** bytes of file content the manifest takes from each referenced backup */
  referenced_bytes: v.optional(v.record(v.string(), v.number())),
  /** files and bytes of the whole tree the manifest describes */
  tree_files: v.optional(v.number()),
  tree_bytes: v.optional(v.number()),
  /** a database page delta (level > 0): when its snapshot's read transaction began, and how many pages it holds */
  snapshot_at: v.optional(v.string()),
  pages: v.optional(v.number()),
  /** a page delta that absorbed older deltas when rotation thinned the chain (ops/pit-compact.ts) */
  merged: v.optional(v.array(v.string())),
  /** a Docker volume's catch-up pass: the containers stopped for it and how long they were down */
  volume: v.optional(
    v.object({
      name: v.string(),
      live_pass: v.optional(v.string()),
      containers: v.array(
        v.object({
          name: v.string(),
          id: v.optional(v.string()),
          stopped: v.boolean(),
          downtime_ms: v.optional(v.number()),
          restarted: v.optional(v.boolean()),
        }),
      ),
    }),
  ),
};
const SidecarSchema = v.object(SIDECAR_ENTRIES);
/** The sidecar JSON: written last, atomically; its presence and validity commit a backup. */
export type Sidecar = v.InferOutput<typeof SidecarSchema>;
/** What this tool writes: the informational fields a reader may miss are always there. */
export type WrittenSidecar = Sidecar & Required<Pick<Sidecar, 'tool' | 'timestamp' | 'created_at' | 'duration_ms'>>;

// a missing required key gets the object's message
const FullSidecarSchema = v.object(
  { ...SIDECAR_ENTRIES, status: v.picklist(['ok', 'partial'], 'metadata has no valid status') },
  'metadata has no valid status',
);
// the artifact first: its absence is the reason to give, before any detail of its description
const { backup_path: _b, checksum: _c, file_size: _f, ...REST } = SIDECAR_ENTRIES;
const ComponentSidecarSchema = v.object(
  {
    backup_path: v.string(LACKS_ARTIFACT),
    checksum: v.string(LACKS_ARTIFACT),
    file_size: v.number(LACKS_ARTIFACT),
    ...REST,
  },
  LACKS_ARTIFACT,
);

// a backup of sources names its files in `components`, not in backup_path/checksum
const SourcesSidecarSchema = v.object({ ...SIDECAR_ENTRIES, components: v.array(ComponentSchema, MALFORMED_COMPONENTS) }, MALFORMED_COMPONENTS);
const hasComponents = (data: unknown) => typeof data === 'object' && data !== null && 'components' in data;

const HeaderSchema = v.object(
  {
    format: v.literal(SIDECAR_FORMAT, (issue) => `unknown metadata format ${JSON.stringify(issue.input)}`),
    type: v.unknown(),
    id: v.unknown(),
  },
  'metadata is not a JSON object',
);

/** Parses and checks the fields a sidecar must have; returns the reason it is unusable, if any. */
export function validateSidecar(data: unknown, type: BackupType, id: string): string | undefined {
  const header = v.safeParse(HeaderSchema, data, { abortEarly: true });
  if (!header.success) return header.issues[0].message;
  if (header.output.type !== type) return `metadata type '${header.output.type}' does not match its directory '${type}'`;
  if (header.output.id !== id) return `metadata id '${header.output.id}' does not match its file name`;
  // no default wording: a field without a message of its own is named once the issue knows its path
  const schema = type === 'full' ? FullSidecarSchema : hasComponents(data) ? SourcesSidecarSchema : ComponentSidecarSchema;
  const body = v.safeParse(schema, data, { abortEarly: true, message: () => '' });
  if (body.success) return undefined;
  const issue = body.issues[0];
  return issue.message || `metadata field ${v.getDotPath(issue) ?? '?'} is ${issue.received}, expected ${issue.expected}`;
}

function isPlainFileName(f: string): boolean {
  return f !== '' && f !== '.' && f !== '..' && !f.includes('/') && !f.includes('\\') && !f.includes('\0');
}

/** The data files a sidecar names, relative to its directory. */
export function artifactFiles(s: Sidecar): { file: string; size: number; checksum: string }[] {
  if (s.components) return s.components;
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
