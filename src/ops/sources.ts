/**
 * Backups of sources (sources/source.ts) for the operations: one sidecar listing every component, and
 * verify, drill and restore that reach each component's kind only through `SourceKind`.
 */
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkParts, localPart, readParts } from '../archive/parts.js';
import type { BackupEntry } from '../catalog/local-store.js';
import { baseName, sidecarPath, timestampOf, typeDir } from '../catalog/names.js';
import { type ComponentInfo, SIDECAR_FORMAT, type WrittenSidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { decryptToFile } from '../crypto/age-artifact.js';
import type { Identity, Recipient } from '../crypto/age-keys.js';
import { BackupError, toBackupError } from '../errors.js';
import { ensureDir, writeFileAtomic } from '../fsutil.js';
import { sourceKind } from '../sources/kinds.js';
import type { ComponentRecord, DrillProof, RestoreOutcome, Source, StagedComponent } from '../sources/source.js';
import { TOOL } from '../version.js';
import { faultPoint } from './fault-point.js';
import { removeJournal, writeJournal } from './restore-journal.js';

export interface SourcesBackup {
  sidecarPath: string;
  files: string[];
  size: number;
  durationMs: number;
  components: ComponentRecord[];
}

/** Snapshots every source into `database/`, then writes the sidecar naming each component; all or nothing. */
export async function backupSources(
  cfg: Config,
  sources: Source[],
  id: string,
  opts: { recipients?: Recipient[]; signal?: AbortSignal; onProgress?: (name: string, bytes: number) => void },
): Promise<SourcesBackup> {
  const started = new Date();
  const dir = typeDir(cfg.backupDir, 'database');
  await ensureDir(dir);
  const components: ComponentRecord[] = [];
  try {
    for (const src of sources) {
      opts.signal?.throwIfAborted();
      components.push(
        ...(await src.snapshot({
          dir,
          id,
          base: baseName('database', id),
          recipients: opts.recipients,
          signal: opts.signal,
          onProgress: (b) => opts.onProgress?.(src.name, b),
        })),
      );
    }
    const size = components.reduce((n, c) => n + c.size, 0);
    const sidecar: WrittenSidecar = {
      format: SIDECAR_FORMAT,
      tool: TOOL,
      id,
      type: 'database',
      timestamp: id.slice(0, 15),
      created_at: started.toISOString(),
      duration_ms: Date.now() - started.getTime(),
      original_path: cfg.postgres?.display,
      file_size: size,
      compression: 'none',
      components: components as ComponentInfo[],
    };
    const sc = sidecarPath(cfg.backupDir, 'database', id);
    await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
    return { sidecarPath: sc, files: [...components.map((c) => path.join(dir, c.file)), sc], size, durationMs: sidecar.duration_ms, components };
  } catch (err) {
    // without its sidecar a dump is not a backup: nothing of this run stays
    await Promise.all(components.map((c) => fsp.rm(path.join(dir, c.file), { force: true })));
    throw toBackupError(err, 'database backup');
  }
}

/** Plaintext, local copies of the components (decrypted into `tmp` when encrypted). */
async function stage(entry: BackupEntry, components: ComponentRecord[], tmp: string, identities?: Identity[]): Promise<StagedComponent[]> {
  const dir = path.dirname(entry.sidecarPath!);
  const out: StagedComponent[] = [];
  for (const c of components) {
    let file = path.join(dir, c.file);
    if (c.encryption) {
      const dest = path.join(tmp, c.file.replace(/\.age$/, ''));
      await decryptToFile(readParts([file]), dest, { identities: identities ?? [], subject: `${c.name} of database backup ${entry.id}`, info: c.encryption });
      file = dest;
    }
    out.push({ record: c, file });
  }
  return out;
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vertex-backup-sources-'));
  try {
    return await fn(tmp);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

/** What a component's kind proves about it beyond its checksum; a missing tool (USAGE) is thrown. */
async function proveComponent(cfg: Config | undefined, entry: BackupEntry, c: ComponentRecord, tmp: string, identities?: Identity[]): Promise<string[]> {
  try {
    const [staged] = await stage(entry, [c], tmp, identities);
    return await sourceKind(cfg, c.kind, true).verify(staged);
  } catch (err) {
    if (err instanceof BackupError && err.code === 'USAGE') throw err;
    return [`${c.name}: ${(err as Error).message}`];
  }
}

/**
 * Verify of a backup of sources: every component's checksum, and what its kind proves (pg_restore reads
 * the whole dump). Encrypted components without a key: the checksums only.
 */
export async function verifySources(
  cfg: Config | undefined,
  entry: BackupEntry,
  identities: Identity[] | undefined,
  /** false: the checksums only (a restore that reads every component whole follows) */
  prove = true,
  /** plain data components: their size only (the restore checks their checksums while it reads them) */
  deferPlain = false,
): Promise<{ problems: string[]; checked: number }> {
  const s = entry.sidecar!;
  const dir = path.dirname(entry.sidecarPath!);
  const problems: string[] = [];
  let checked = 0;
  await withTemp(async (tmp) => {
    for (const c of s.components ?? []) {
      if (deferPlain && isDeferred(c)) {
        const st = await fsp.stat(path.join(dir, c.file)).catch(() => undefined);
        if (!st) problems.push(`missing ${c.file}`);
        else if (st.size !== c.size) problems.push(`${c.name}: ${c.file} is ${st.size} bytes, ${c.size} were written`);
        continue;
      }
      const sums: string[] = [];
      const checksum = checkParts([c], localPart(dir), { onProblem: (p) => sums.push(`${c.name}: ${p}`) }).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        sums.push(`missing ${c.file}`);
      });
      // a plain file is read by its kind's tool while it is hashed (one pass over the page cache, two
      // cores); an encrypted one is decrypted only once its ciphertext is known to be whole
      const proving = prove && !c.encryption ? proveComponent(cfg, entry, c, tmp, identities) : undefined;
      proving?.catch(() => {});
      const got = await checksum;
      if (got) checked += got.size;
      if (sums.length) {
        // the kind's complaints about a damaged file say the same thing less clearly
        await proving?.catch(() => {});
        problems.push(...sums);
        continue;
      }
      if (proving) problems.push(...(await proving));
      else if (prove && identities?.length) problems.push(...(await proveComponent(cfg, entry, c, tmp, identities)));
    }
  });
  return { problems, checked };
}

/** Restores each database of the backup into a scratch database, compares tables and rows, drops it. */
export async function drillSources(cfg: Config, entry: BackupEntry, identities?: Identity[]): Promise<DrillProof[]> {
  const scratchId = timestampOf(new Date()).toLowerCase();
  return withTemp(async (tmp) => {
    const proofs: DrillProof[] = [];
    for (const c of (entry.sidecar!.components ?? []).filter((x) => x.role === 'data')) {
      const [staged] = await stage(entry, [c], tmp, identities);
      proofs.push(await sourceKind(cfg, c.kind).drill(staged, scratchId));
    }
    return proofs;
  });
}

/** A component whose checksum a restore checks while its kind reads it (see verifySources' deferPlain). */
const isDeferred = (c: ComponentRecord) => c.role === 'data' && !c.encryption;

export interface SourcesRestoreOptions {
  /** check the checksum of each plain dump while it is restored, before the swap (verify deferred it) */
  checksums?: boolean;
  /** restore beside the live database under this name (one database only) */
  targetDb?: string;
  /** only these databases (default: every one in the backup) */
  databases?: string[];
  /** also restore roles and tablespaces */
  globals?: boolean;
  identities?: Identity[];
  onStep?: (step: string) => void;
  /** leave the sources alone (a drill proves them in scratch databases instead) */
  skip?: boolean;
}

/** Restores every database of a backup of sources, each one swapped in only after it was restored and checked. */
export async function restoreSources(cfg: Config, entry: BackupEntry, opts: SourcesRestoreOptions): Promise<RestoreOutcome[]> {
  const all = entry.sidecar!.components ?? [];
  const data = all.filter((c) => c.role === 'data' && (!opts.databases?.length || opts.databases.includes(c.name)));
  if (opts.databases?.length) {
    const missing = opts.databases.filter((d) => !data.some((c) => c.name === d));
    if (missing.length) throw new BackupError('USAGE', `database backup ${entry.id} holds no database ${missing.join(', ')}`);
  }
  if (opts.targetDb && data.length !== 1)
    throw new BackupError('USAGE', `--target-db restores one database: the backup holds ${data.map((c) => c.name).join(', ')}`, {
      hint: 'name the database to restore',
      remedy: 'database-name',
    });
  const runId = timestampOf(new Date());
  return withTemp(async (tmp) => {
    const outcomes: RestoreOutcome[] = [];
    if (opts.globals) {
      const globals = all.filter((c) => c.role !== 'data');
      for (const g of globals)
        outcomes.push(await sourceKind(cfg, g.kind).restore(await stage(entry, [g], tmp, opts.identities), { id: runId, withAuxiliary: true }));
    }
    const started_at = new Date().toISOString();
    for (const c of data) {
      const staged = await stage(entry, [c], tmp, opts.identities);
      // what the next command needs to complete or roll back this database's restore if we die
      const record = (state: Record<string, unknown> | undefined) =>
        state
          ? writeJournal(cfg.backupDir, { id: runId, pid: process.pid, started_at, phase: 'source', source: { kind: c.kind, state } })
          : removeJournal(cfg.backupDir);
      // the checksum is read beside pg_restore (one pass over the page cache, two cores) and awaited before
      // anything live changes: a damaged dump never gets past the new database
      let sum: Promise<string[]> | undefined;
      if (opts.checksums && isDeferred(c)) {
        const found: string[] = [];
        sum = checkParts([c], localPart(path.dirname(entry.sidecarPath!)), { onProblem: (p) => found.push(`${c.name}: ${p}`) }).then(
          () => found,
          (err: Error) => [...found, `${c.name}: ${err.message}`],
        );
      }
      const beforeSwap = async () => {
        const bad = (await sum) ?? [];
        if (bad.length) throw new BackupError('DAMAGED', `database backup ${entry.id} failed verification: ${bad.join('; ')}`);
      };
      outcomes.push(
        await sourceKind(cfg, c.kind).restore(staged, { id: runId, target: opts.targetDb, onStep: opts.onStep, record, checkpoint: faultPoint, beforeSwap }),
      );
    }
    return outcomes;
  });
}
