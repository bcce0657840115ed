/**
 * The shape of every *component source*, a thing a backup captures as one file (DESIGN.md §1 "Sources"):
 * SQLite through the original single-file sidecar, and PostgreSQL databases. Catalog, sidecar, verify,
 * drill, rotate and sync know a component source only through this file.
 *
 * File trees are the other shape (*tree sources*): the storage directory and each Docker volume go through
 * the incremental packer (archive/pack.ts: manifests, chains, excludes), one backup directory per tree
 * (`volumes/<name>/` for a volume, ops/volumes.ts). A volume is not a component here on purpose: a tree
 * changes by a few files a night, and a component is whole each time; a volume gets the storage path's
 * chains, verify, drill, sync, encryption and rotation by being a tree, with no branch of its own.
 *
 * - a **Source** is one configured thing (kind + name) that can `check()` itself before anything is
 *   written and `snapshot()` itself into the backup directory, returning one or more **components**;
 * - a **component** (`ComponentRecord`, stored in the sidecar's `components` list) is one file beside the
 *   sidecar: kind, name, role, file, size, checksum, optional age encryption and the kind's own `info`
 *   (versions, tables and row counts…). Rotation and sync see components only as files
 *   (`artifactFiles` in catalog/sidecar.ts); checksums are checked the same way for every kind;
 * - a **SourceKind** (registered by kind name in `SOURCE_KINDS`) knows what a stored component proves:
 *   `verify` (readable beyond its checksum), `drill` (restored into scratch space and compared with what
 *   was recorded), `restore` (never destroying the live thing first).
 *
 * Adding a kind = one file in src/sources/ implementing `Source` + `SourceKind` and one `registerKind`
 * call in sources/kinds.ts; no other branch anywhere. A new tree (another volume driver, a bind mount) is
 * a `VolumeTarget`-like directory handed to the packer, not a kind.
 */
import type { EncryptionInfo } from '../catalog/sidecar.js';
import type { Recipient } from '../crypto/age-keys.js';

/** One stored file of a source, as the sidecar lists it. */
export interface ComponentRecord {
  /** the source kind that wrote it: 'sqlite', 'postgres', 'volume'… */
  kind: string;
  /** what the operator calls it: database name, volume name */
  name: string;
  /** 'data' (the thing itself) or an auxiliary file such as PostgreSQL's 'globals' (roles, tablespaces) */
  role: string;
  /** file name beside the sidecar */
  file: string;
  size: number;
  /** sha256 hex of the file as stored (the ciphertext when encrypted) */
  checksum: string;
  encryption?: EncryptionInfo;
  /** kind-specific facts recorded at snapshot time (versions, `tables: {name: rows}`…) */
  info?: Record<string, unknown>;
}

export interface SnapshotContext {
  /** the directory the files go in (the sidecar's directory) */
  dir: string;
  /** the backup id: file names are `<base>_<id>…` */
  id: string;
  /** file name prefix for this backup: `db_backup_<id>` */
  base: string;
  /** encrypt every file to these age recipients */
  recipients?: Recipient[];
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
}

/** A configured thing to back up. */
export interface Source {
  readonly kind: string;
  readonly name: string;
  /** Everything that can be found out before a byte is written (reachable, versions, exists). Throws BackupError. */
  check(): Promise<void>;
  /**
   * Writes the source's files into `ctx.dir` under temporary names, checksummed while written, and
   * commits them (rename) only when the capture succeeded; on any failure nothing of it is left behind.
   */
  snapshot(ctx: SnapshotContext): Promise<ComponentRecord[]>;
}

/** A plaintext, seekable copy of a stored component, ready for the kind's tools. */
export interface StagedComponent {
  record: ComponentRecord;
  /** a local plaintext file (the stored file itself, or a decrypted temporary copy) */
  file: string;
}

export interface DrillProof {
  name: string;
  ok: boolean;
  problems: string[];
  /** what was compared: tables and rows */
  tables?: number;
  rows?: number;
  /** time to restore this component into scratch space: its RTO */
  restoreMs: number;
}

export interface RestoreRequest {
  id: string;
  /** restore beside the live thing under this name instead of replacing it */
  target?: string;
  /** also restore the auxiliary components (PostgreSQL globals) */
  withAuxiliary?: boolean;
  onStep?: (step: string) => void;
  /**
   * Keeps what the next command needs to complete or roll back this restore if the process dies here
   * (the caller writes it to the restore journal; undefined: nothing to heal any more). Awaited before
   * the step it describes begins.
   */
  record?: (state: Record<string, unknown> | undefined) => Promise<void>;
  /**
   * Awaited once the copy is restored and checked, before it is swapped in (or reported restored beside):
   * the stored file's checksum, read while the kind restored it. Throws when it does not match.
   */
  beforeSwap?: () => Promise<void>;
  /** named points of the restore, where the fault suite kills the process */
  checkpoint?: (name: string) => void;
}

export interface RestoreOutcome {
  name: string;
  /** where it was restored */
  restoredAs: string;
  /** the previous live thing, kept under this name (never dropped by the tool) */
  keptAs?: string;
  notes: string[];
}

/** What the tool knows about stored components of one kind: how to prove and restore them. */
export interface SourceKind {
  readonly kind: string;
  /** Problems found reading the whole component beyond its checksum (empty: it is readable). */
  verify(c: StagedComponent): Promise<string[]>;
  /** Restores the component into scratch space, compares it with `record.info`, removes the scratch copy. */
  drill(c: StagedComponent, scratchId: string): Promise<DrillProof>;
  /** Restores the data components of one source (and auxiliaries on request) without destroying the live one first. */
  restore(components: StagedComponent[], req: RestoreRequest): Promise<RestoreOutcome>;
  /**
   * Completes or rolls back a restore killed after it recorded `state` (RestoreRequest.record); returns
   * what it did, in one sentence. A state this kind would not have written is refused (BackupError).
   */
  recover(state: Record<string, unknown>, id: string): Promise<string>;
}
