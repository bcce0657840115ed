import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { resolveRef } from '../catalog/judge.js';
import { type BackupEntry, componentLookup, findBackup, listBackups } from '../catalog/local-store.js';
import { artifactFiles, type BackupType, type Sidecar } from '../catalog/sidecar.js';
import { readManifest } from '../archive/manifest.js';
import { checkParts, discard, hashParts, localPart } from '../archive/parts.js';
import { judgeRecord } from '../archive/restore-chain.js';
import { artifactCodec, type OpenedArtifact, openArtifact } from '../archive/open-artifact.js';
import { decryptToFile } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { manifestFileOf } from './file-manifest.js';
import { BackupError, usageError } from '../errors.js';
import { type Remote, RemoteError } from '../remote/remote.js';
import { type FileRef, type TransferOptions, artifactRefs, checkRemoteFile, dataFiles, listRemoteBackups } from '../offsite/transfer.js';
import { manifestChain, pinsOf } from '../catalog/chain.js';
import { isPageDelta } from '../catalog/page-chain.js';
import { verifyPageDelta } from '../archive/page-delta.js';
import { exists } from '../fsutil.js';
import type { Config } from '../config.js';
import { checkDatabaseFile } from '../sources/sqlite.js';
import type { ProgressFn } from './progress.js';
import { verifySources } from './sources.js';

export interface VerifyResult {
  type: BackupType;
  id: string;
  ok: boolean;
  problems: string[];
  /** the backup's size as list shows it (a full backup: its components) */
  sizeBytes: number;
  /** bytes hashed */
  checked: number;
  /** being written by the run that holds the lock: not checked, not damaged */
  inProgress?: boolean;
  note?: string;
  /** encrypted backups: 'decrypted' (contents checked with a key) or 'ciphertext' (bytes only) */
  encryption?: 'decrypted' | 'ciphertext';
}

export interface VerifyReport {
  ok: boolean;
  results: VerifyResult[];
}

export interface VerifyOptions {
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /** decrypt encrypted backups with these and check their contents too */
  identities?: Identity[];
  /** the configuration, for source kinds that read a stored component with the configured tools (PG_BIN_DIR) */
  config?: Config;
  /**
   * A restore (or drill) follows at once: a source component is then only checksummed here, since its
   * kind's restore reads it whole into a new database anyway before anything live changes (a second
   * full read cost PostgreSQL restores half their time, and an encrypted dump a second decryption). The
   * same for a storage archive: the restore unpacks it whole into staging, checking every file, first.
   */
  restoring?: boolean;
  /**
   * With `restoring`: a plain (unencrypted) data component is only looked at here (there, its size);
   * its checksum is checked by the restore while its kind reads it into the new database, and nothing
   * is swapped in before it matches (ops/sources.ts restoreSources).
   */
  deferPlainSources?: boolean;
}

/** Reads every entry of a tar stream to the end, counting files and entries: a full parse of the archive. */
function tarCounter(): { sink: Writable; counts: { files: number; entries: number; bytes: number } } {
  const counts = { files: 0, entries: 0, bytes: 0 };
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    counts.entries++;
    if (header.type === 'file' || header.type === 'contiguous-file') counts.files++;
    stream.on('data', (c: unknown) => {
      counts.bytes += (c as Buffer).length;
    });
    stream.on('end', next);
    // a corrupt archive fails the entry stream and the extractor together: the pipeline reports it once
    stream.on('error', () => {});
    stream.resume();
  });
  return { sink: extract as unknown as Writable, counts };
}

/** A full backup is as good as its components: each one found and checked (local or remote alike). */
async function verifyComponents<R extends { ok: boolean; problems: string[] }>(
  s: Sidecar,
  find: (type: 'database' | 'storage', id: string) => Promise<BackupEntry | undefined>,
  verify: (component: BackupEntry) => Promise<R>,
): Promise<{ problems: string[]; results: R[] }> {
  const problems: string[] = [];
  const results: R[] = [];
  for (const t of ['database', 'storage'] as const) {
    const cid = s[t];
    if (!cid) continue;
    const comp = await find(t, cid);
    if (!comp) {
      problems.push(`${t} component ${cid} is missing`);
      continue;
    }
    const r = await verify(comp);
    results.push(r);
    if (!r.ok) problems.push(`${t} component ${cid}: ${r.problems.join('; ')}`);
  }
  return { problems, results };
}

async function verifyArtifact(entry: BackupEntry, opts: VerifyOptions, result: VerifyResult): Promise<void> {
  const s = entry.sidecar!;
  if (s.components) {
    // a backup of sources: each component's checksum, then what its kind proves (sources/source.ts)
    const got = await verifySources(opts.config, entry, opts.identities, !opts.restoring, !!(opts.restoring && opts.deferPlainSources));
    result.problems.push(...got.problems);
    result.checked += got.checked;
    return;
  }
  const dir = path.dirname(entry.sidecarPath!);
  const parts = artifactFiles(s);
  const missing: string[] = [];
  for (const p of parts) if (!(await exists(path.join(dir, p.file)))) missing.push(p.file);
  if (missing.length) {
    result.problems.push(`missing ${missing.join(', ')}`);
    return;
  }
  const before = result.checked;
  const { stream, whole } = hashParts(parts, localPart(dir), {
    onBytes: (bytes) => {
      result.checked = before + bytes;
      opts.onProgress?.({ phase: 'verify', subject: entry.id, bytes: result.checked, totalBytes: s.file_size });
    },
    onProblem: (problem) => result.problems.push(problem),
  });

  const enc = s.encryption;
  const decrypt = enc && opts.identities?.length ? { identities: opts.identities, subject: `${entry.type} backup ${entry.id}`, info: enc } : undefined;
  if (enc) result.encryption = decrypt ? 'decrypted' : 'ciphertext';
  let plainDb: string | undefined;
  if (entry.type === 'database' || (enc && !decrypt)) {
    // without a key the ciphertext checksums are what can be proved: the bytes are intact
    if (entry.type === 'database' && decrypt) {
      const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vertex-backup-verify-'));
      plainDb = path.join(tmpDir, 'db');
      try {
        await decryptToFile(stream, plainDb, decrypt);
      } catch (err) {
        await fsp.rm(tmpDir, { recursive: true, force: true });
        if (opts.signal?.aborted || !(err instanceof BackupError)) throw err;
        result.problems.push(err.message);
        return;
      }
    } else await pipeline(stream, discard(), { signal: opts.signal });
  } else if (opts.restoring && entry.type === 'storage') {
    // the restore that follows decrypts, authenticates, decompresses and parses every byte of this
    // archive into its staging directory (each file against the manifest, the entry count against the
    // sidecar) before anything live changes: doing all that here too read the archive twice (a restore
    // with verification cost 1.6x one without, an encrypted one 2x). Here: the checksums of the stored bytes.
    await pipeline(stream, discard(), { signal: opts.signal });
  } else {
    if (!artifactCodec(s)) {
      result.problems.push(`unknown compression '${s.compression}'`);
      return;
    }
    const { sink, counts } = tarCounter();
    let artifact: OpenedArtifact | undefined;
    let problem: string | undefined;
    try {
      // the bytes hashed above, through the one read path: decrypted (with a key), decompressed, parsed to the end
      artifact = await openArtifact(dir, s, { input: stream, identities: decrypt?.identities, subject: `${entry.type} backup ${entry.id}` });
      await pipeline(artifact.stream, sink, { signal: opts.signal });
      problem = await artifact.plaintextProblem();
    } catch (err) {
      if (artifact) artifact.destroy();
      else stream.destroy();
      if (opts.signal?.aborted) throw err;
      result.problems.push(err instanceof BackupError ? err.message : `archive cannot be read: ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    if (problem) result.problems.push(problem);
    if (s.file_count !== undefined && counts.files !== s.file_count) result.problems.push(`archive holds ${counts.files} files, metadata says ${s.file_count}`);
    if (s.entry_count !== undefined && counts.entries !== s.entry_count)
      result.problems.push(`archive holds ${counts.entries} entries, metadata says ${s.entry_count}`);
  }
  if (result.problems.length === 0 && whole().checksum !== s.checksum) result.problems.push('checksum of the whole artifact does not match');

  if (entry.type === 'database' && result.problems.length === 0 && isPageDelta(s)) {
    // a page delta is no database on its own: its pages against their hashes; the state it completes is
    // rebuilt and integrity-checked by every restore (ops/pit.ts), its chain judged by the catalog. An
    // encrypted one (fetched from an encrypting remote) is read in the copy decrypted above; without a
    // key its ciphertext checksum is what was proved
    if (!enc || plainDb)
      await verifyPageDelta(plainDb ?? path.join(dir, parts[0].file))
        .catch((err) => {
          if (!(err instanceof BackupError)) throw err;
          result.problems.push(err.message);
        })
        .finally(() => plainDb && fsp.rm(path.dirname(plainDb), { recursive: true, force: true }));
  } else if (entry.type === 'database' && result.problems.length === 0 && (!enc || plainDb)) {
    try {
      const db = checkDatabaseFile(plainDb ?? path.join(dir, parts[0].file));
      if (db.integrity !== 'ok') result.problems.push(`integrity_check: ${db.integrity.slice(0, 200)}`);
      else if (s.sqlite && db.tables < s.sqlite.tables) result.problems.push(`database holds ${db.tables} tables, metadata says ${s.sqlite.tables}`);
    } finally {
      if (plainDb) await fsp.rm(path.dirname(plainDb), { recursive: true, force: true });
    }
  } else if (plainDb) await fsp.rm(path.dirname(plainDb), { recursive: true, force: true });
}

/** Deep check of one backup: every byte hashed, databases integrity-checked, archives parsed to the end. */
export async function verifyEntry(
  backupDir: string,
  entry: BackupEntry,
  opts: VerifyOptions = {},
  cache = new Map<string, VerifyResult>(),
  lookup = componentLookup(backupDir),
): Promise<VerifyResult> {
  const key = `${entry.type}:${entry.id}`;
  const cached = cache.get(key);
  if (cached) return cached;
  const result: VerifyResult = { type: entry.type, id: entry.id, ok: false, problems: [], sizeBytes: entry.size, checked: 0 };
  cache.set(key, result);
  if (entry.status === 'in-progress') {
    result.inProgress = true;
    result.problems = [];
    result.ok = true;
    result.note = entry.reason;
    return result;
  }
  if (entry.status === 'incomplete' || !entry.sidecar) {
    result.problems.push(entry.reason ?? `backup is ${entry.status}`);
  } else if (entry.type === 'full') {
    const s = entry.sidecar;
    if (s.status === 'partial') result.problems.push(`partial full backup: ${(s.errors ?? []).join('; ') || 'a component failed'}`);
    const components = await verifyComponents(s, lookup, (comp) => verifyEntry(backupDir, comp, opts, cache, lookup));
    result.problems.push(...components.problems);
    for (const r of components.results) result.checked += r.checked;
  } else {
    await verifyArtifact(entry, opts, result);
    if (entry.sidecar.manifest) await verifyChain(entry, opts, cache, lookup, result);
  }
  result.ok = result.problems.length === 0;
  return result;
}

async function verifyManifest(entry: BackupEntry, result: VerifyResult, signal?: AbortSignal, identities?: Identity[]): Promise<void> {
  const m = entry.sidecar!.manifest!;
  const problems: string[] = [];
  const got = await checkParts([m], localPart(path.dirname(entry.sidecarPath!)), { onProblem: (p) => problems.push(p) }, signal).catch((err) => {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    problems.push(`missing ${m.file}`);
  });
  // the records judged exactly as restore judges them: verify never says ok to what restore refuses
  // an encrypted manifest (create --encrypt) is read with a key; without one its ciphertext was checked above
  const { file, checksum, key } = manifestFileOf(path.dirname(entry.sidecarPath!), entry.sidecar!, identities);
  const readable = key ? key.identities.length > 0 : !m.file.endsWith('.age');
  if (key && !readable) result.encryption ??= 'ciphertext';
  if (got && !problems.length && readable) {
    try {
      for await (const r of readManifest(file, checksum, key)) {
        if (!r.x) judgeRecord(r);
      }
    } catch (err) {
      if (!(err instanceof BackupError) || err.code !== 'DAMAGED') throw err;
      problems.push(err.message);
    }
  }
  result.problems.push(...problems);
  if (got && !problems.length) result.checked += got.size;
}

/** An incremental storage backup needs its manifest and the archive of every backup the manifest references. */
async function verifyChain(
  entry: BackupEntry,
  opts: VerifyOptions,
  cache: Map<string, VerifyResult>,
  lookup: ReturnType<typeof componentLookup>,
  result: VerifyResult,
): Promise<void> {
  await verifyManifest(entry, result, opts.signal, opts.identities);
  // the file list of a level N backup is the merge of its chain's manifests: each is checked with its archive
  const chain = manifestChain(entry.id, entry.sidecar!);
  const archives = await verifyChainArchives(entry, {
    find: (rid) => lookup('storage', rid),
    cache,
    result: (rid, dep) => ({ type: 'storage' as const, id: rid, ok: false, problems: [], sizeBytes: dep?.size ?? 0, checked: 0 }),
    check: async (dep, r) => {
      await verifyArtifact(dep, opts, r);
      if (chain.includes(dep.id) && dep.sidecar?.manifest) await verifyManifest(dep, r, opts.signal, opts.identities);
    },
    checked: (r) => {
      result.checked += r.checked;
    },
  });
  result.problems.push(...archives);
}

interface ChainArchiveCheck<R extends { ok: boolean; problems: string[] }> {
  find: (id: string) => Promise<BackupEntry | undefined>;
  /** one result per archive and run, under `archive:storage:<id>` */
  cache: Map<string, R>;
  result: (id: string, dep: BackupEntry | undefined) => R;
  check: (dep: BackupEntry, r: R) => Promise<void>;
  /** an archive checked for the first time in this run */
  checked?: (r: R) => void;
}

/**
 * An incremental backup is as good as the archives of its chain: each found and checked once (local or
 * remote alike). A storage backup's sidecar lists its whole chain; a database page delta names only
 * `previous` (catalog/page-chain.ts), so its links are followed down to the level 0.
 */
async function verifyChainArchives<R extends { ok: boolean; problems: string[] }>(
  entry: BackupEntry,
  c: ChainArchiveCheck<R>,
  type: 'storage' | 'database' = 'storage',
): Promise<string[]> {
  const problems: string[] = [];
  const queue = pinsOf({ id: entry.id, references: entry.sidecar?.references });
  const seen = new Set<string>([entry.id]);
  while (queue.length) {
    const rid = queue.shift()!;
    if (seen.has(rid)) continue;
    seen.add(rid);
    const key = `archive:${type}:${rid}`;
    let r = c.cache.get(key);
    let dep: BackupEntry | undefined;
    if (!r) {
      dep = await c.find(rid);
      r = c.result(rid, dep);
      if (!dep?.sidecar) r.problems.push(dep ? `it is ${dep.status}` : 'it is missing');
      else await c.check(dep, r);
      r.ok = r.problems.length === 0;
      c.cache.set(key, r);
      c.checked?.(r);
    }
    if (!r.ok) problems.push(`needs the ${type === 'storage' ? 'archive of storage backup' : 'database backup'} ${rid}: ${r.problems.join('; ')}`);
    if (type === 'database') {
      const link = dep ?? (await c.find(rid));
      if (isPageDelta(link?.sidecar)) queue.push(...pinsOf({ id: rid, references: link?.sidecar?.references }));
    }
  }
  return problems;
}

export interface VerifySelection {
  ref?: string;
  latest?: boolean;
  all?: boolean;
  type?: BackupType;
}

/** Picks the backups to verify: one by id or path, the newest of each type (default), or all. */
export async function selectForVerify(backupDir: string, sel: VerifySelection): Promise<BackupEntry[]> {
  // verifying nothing must not look like success: a mistyped --backup-dir is an error
  if (!(await exists(backupDir))) {
    throw new BackupError('USAGE', `${sel.ref ? `no backup '${sel.ref}': ` : ''}backup directory not found: ${backupDir}`, {
      hint: 'set the backup directory (BACKUP_DIR) to where the backups are',
      remedy: 'backup-dir',
    });
  }
  if (sel.ref) {
    const e = await findBackup(backupDir, sel.ref, sel.type);
    if (!e) throw new BackupError('USAGE', `no backup '${sel.ref}' in ${backupDir}`, { hint: 'run vertex-backup list to see the ids', argument: true });
    return [e];
  }
  const entries = await listBackups(backupDir, { type: sel.type });
  return sel.all ? entries : newestOfEachType(entries);
}

/** The newest finished backup of each type, damaged or not; what the running create writes is shown as in progress. */
function newestOfEachType(entries: BackupEntry[]): BackupEntry[] {
  const newest = new Map<BackupType, BackupEntry>();
  for (const e of entries) if (e.status !== 'in-progress' && !newest.has(e.type)) newest.set(e.type, e);
  return entries.filter((e) => e.status === 'in-progress' || newest.get(e.type) === e);
}

export async function verifyBackups(backupDir: string, sel: VerifySelection, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const entries = await selectForVerify(backupDir, sel);
  const cache = new Map<string, VerifyResult>();
  const lookup = componentLookup(backupDir);
  const results: VerifyResult[] = [];
  for (const e of entries) results.push(await verifyEntry(backupDir, e, opts, cache, lookup));
  return { ok: results.every((r) => r.ok), results };
}

// verify --remote: the remote's files hashed against their sidecars, without a local copy

export interface RemoteVerifyResult {
  type: BackupType;
  id: string;
  ok: boolean;
  problems: string[];
  checkedFiles: number;
  totalFiles: number;
  bytes: number;
}

export interface RemoteVerifyOptions extends TransferOptions {
  ref?: string; // an id, a sidecar name, or 'latest'; by default the newest of each type
  all?: boolean;
  type?: BackupType;
  /** hash only this percentage of each backup's files, chosen at random (at least one) */
  samplePercent?: number;
  random?: () => number;
}

/** One backup by id or name (`latest`: the newest good one), all, or by default the newest of each type. */
function pickBackups(list: BackupEntry[], ref: string | undefined, all: boolean): BackupEntry[] {
  if (all) return list;
  if (!ref) return newestOfEachType(list);
  const b = resolveRef(list, ref);
  if (!b) throw usageError(`no backup "${ref}" on the remote`, 'see what it holds: list the remote', 'remote-list');
  return [b];
}

function sample<T>(items: T[], percent: number | undefined, random: () => number): T[] {
  if (percent === undefined || percent >= 100 || items.length === 0) return items;
  const n = Math.max(1, Math.ceil((items.length * Math.max(0, percent)) / 100));
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy.slice(0, n);
}

/** Downloads and hashes the files of remote backups (all of them, or a random sample) against their sidecars. */
export async function verifyRemote(remote: Remote, options: RemoteVerifyOptions = {}): Promise<{ ok: boolean; results: RemoteVerifyResult[] }> {
  const list = await listRemoteBackups(remote, { ...options, type: options.type });
  const chosen = pickBackups(list, options.ref, !!options.all);
  const byKey = new Map(list.map((b) => [`${b.type}:${b.id}`, b]));
  const results: RemoteVerifyResult[] = [];
  const done = new Set<string>();
  const archiveCache = new Map<string, RemoteVerifyResult>();
  const hashRemoteFiles = async (files: FileRef[], r: RemoteVerifyResult): Promise<void> => {
    r.totalFiles += files.length;
    for (const f of sample(files, options.samplePercent, options.random ?? Math.random)) {
      try {
        const got = await checkRemoteFile(remote, f, options);
        r.checkedFiles++;
        r.bytes += got.size;
        if (got.problem) r.problems.push(got.problem);
      } catch (err) {
        if (err instanceof RemoteError && err.kind === 'missing') r.problems.push(`${f.rel} is missing`);
        else throw err;
      }
    }
  };
  const verifyOne = async (b: BackupEntry): Promise<RemoteVerifyResult> => {
    const r: RemoteVerifyResult = { type: b.type, id: b.id, ok: true, problems: [], checkedFiles: 0, totalFiles: 0, bytes: 0 };
    if (!b.sidecar) {
      r.problems.push(b.reason ?? 'no metadata');
    } else if (b.type === 'full') {
      const components = await verifyComponents(b.sidecar, async (t, cid) => byKey.get(`${t}:${cid}`), verifyOne);
      r.problems.push(...components.problems);
      for (const sub of components.results) {
        done.add(`${sub.type}:${sub.id}`);
        results.push(sub);
      }
    } else {
      await hashRemoteFiles(dataFiles(b.type, b.sidecar), r);
      // an incremental backup needs the archives of its chain on the remote too: a storage backup's
      // archives, a page delta's links down to its level 0 (a chain stays within its type)
      const chainType: 'database' | 'storage' = b.type === 'database' ? 'database' : 'storage';
      const archives =
        b.type === 'storage' || isPageDelta(b.sidecar)
          ? await verifyChainArchives(
              b,
              {
                find: async (rid) => byKey.get(`${chainType}:${rid}`),
                cache: archiveCache,
                result: (rid) => ({ type: chainType, id: rid, ok: false, problems: [], checkedFiles: 0, totalFiles: 0, bytes: 0 }),
                check: (dep, dr) => hashRemoteFiles(artifactRefs(chainType, dep.sidecar!), dr),
                checked: (dr) => {
                  r.checkedFiles += dr.checkedFiles;
                  r.totalFiles += dr.totalFiles;
                  r.bytes += dr.bytes;
                },
              },
              chainType,
            )
          : [];
      r.problems.push(...archives);
    }
    r.ok = r.problems.length === 0;
    return r;
  };
  for (const b of chosen) {
    if (done.has(`${b.type}:${b.id}`)) continue;
    results.push(await verifyOne(b));
    done.add(`${b.type}:${b.id}`);
  }
  if (!chosen.length) throw usageError(`no backups on ${remote.url} to verify`);
  return { ok: results.every((r) => r.ok), results };
}
