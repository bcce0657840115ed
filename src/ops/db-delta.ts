import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { PAGE_DELTA_EXTENSION, PAGE_HASH_SIZE, PageDeltaWriter, pageHash, readPageDeltaIndex } from '../archive/page-delta.js';
import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { baseName, compareIds, parseName, sidecarPath, typeDir } from '../catalog/names.js';
import { type DeltaSidecar, deltaChain, type NextDeltaLevel, nextDeltaLevel } from '../catalog/page-chain.js';
import { parseSidecar, SIDECAR_FORMAT, type WrittenSidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { BackupError, toBackupError } from '../errors.js';
import { ensureDir, sha256File, writeFileAtomic } from '../fsutil.js';
import { backupDatabase, removeSqliteSidecars } from '../sources/sqlite.js';
import { readFilePages, readSnapshotPages } from '../sources/sqlite-pages.js';
import { TOOL } from '../version.js';
import { PartWriter } from '../archive/parts.js';
import { AGE_EXTENSION, type EncryptionInfo, encryptFileInto } from '../crypto/age-artifact.js';
import { describeRecipient, type Recipient } from '../crypto/age-keys.js';
import { plaintextManifestDir } from './encrypted-manifest.js';
import { faultPoint } from './fault-point.js';

/** `create --type database --incremental`: page deltas (see docs/point-in-time.md). */
export interface DatabaseRunOptions {
  incremental?: boolean;
  /** force a level 0 */
  full?: boolean;
  /** a new level 0 once the chain's level 0 is this old */
  fullEveryMs?: number;
}

export interface DeltaBackup {
  id: string;
  sidecarPath: string;
  files: string[];
  size: number;
  checksum: string;
  durationMs: number;
  level: number;
  /** pages written (level N) or in the copy (level 0) */
  pages: number;
  /** why a new level 0 was started */
  reason?: string;
}

/** A new level 0 once the chain's deltas hold more than this share of its level 0's bytes. */
export const MAX_DELTA_SHARE = 0.5;
export const DEFAULT_DB_FULL_EVERY_MS = 7 * 86_400_000;

/**
 * The page hashes of the newest state of the chain, kept beside the backups so a run does not reread
 * the chain: a cache, rebuilt from the level 0 and the deltas' indexes whenever it does not name the
 * backup the run follows. Never part of a backup (its name is no backup's), never needed to restore.
 */
const PAGEMAP = '.pagemap';
const PAGEMAP_MAGIC = 'VBPGMAP1';
/**
 * An encrypted chain's page hashes say which pages equal a guess: they stay out of the backup directory,
 * in the state directory beside the plaintext manifests of encrypted storage backups (0700).
 */
const ENCRYPTED_PAGEMAP = 'database.pagemap';

interface PageMap {
  id: string;
  pageSize: number;
  /** PAGE_HASH_SIZE bytes per page, page 1 first */
  hashes: Buffer;
  /** the chain up to `id`, so the next run plans without reading thousands of sidecars (see quickPlan) */
  chain?: ChainSummary;
}

/** A link of a chain as the cache remembers it: the backup, its file's name and size. */
interface ChainLink {
  id: string;
  file: string;
  size: number;
}

interface ChainSummary {
  dbPath: string;
  /** when the level 0 was made (--full-every) */
  baseCreatedAt: string;
  /** level 0 first */
  links: ChainLink[];
}

async function readPageMap(file: string): Promise<PageMap | undefined> {
  const data = await fsp.readFile(file).catch(() => undefined);
  if (!data || data.length < 8 + 4 + 32 || data.subarray(0, 8).toString('latin1') !== PAGEMAP_MAGIC) return undefined;
  const body = data.subarray(0, data.length - 32);
  if (
    !createHash('sha256')
      .update(body)
      .digest()
      .equals(data.subarray(data.length - 32))
  )
    return undefined;
  const jsonLength = data.readUInt32BE(8);
  try {
    const head = JSON.parse(data.subarray(12, 12 + jsonLength).toString('utf8')) as { id: string; page_size: number; chain?: ChainSummary };
    const hashes = body.subarray(12 + jsonLength);
    if (hashes.length % PAGE_HASH_SIZE) return undefined;
    return { id: head.id, pageSize: head.page_size, hashes, chain: head.chain };
  } catch {
    return undefined;
  }
}

async function writePageMap(file: string, m: PageMap): Promise<void> {
  const json = Buffer.from(JSON.stringify({ id: m.id, page_size: m.pageSize, chain: m.chain }));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length, 0);
  const body = Buffer.concat([Buffer.from(PAGEMAP_MAGIC, 'latin1'), len, json, m.hashes]);
  await writeFileAtomic(file, Buffer.concat([body, createHash('sha256').update(body).digest()]));
}

/** The chain up to `id` as the cache keeps it, from a listing. */
function chainSummary(entries: BackupEntry[], id: string): ChainSummary | undefined {
  const byId = new Map(entries.filter((e) => e.status === 'ok').map((e) => [e.id, e]));
  const chain = deltaChain(id, (cid) => byId.get(cid)?.sidecar as never);
  const base = chain && byId.get(chain[0])?.sidecar;
  if (!chain || !base?.original_path || !base.created_at) return undefined;
  const links = chain.map((cid) => {
    const s = byId.get(cid)!.sidecar!;
    return { id: cid, file: path.basename(s.backup_path ?? ''), size: s.file_size ?? -1 };
  });
  return { dbPath: path.resolve(base.original_path), baseCreatedAt: base.created_at, links };
}

/**
 * The plan of a run from the cache alone, when it still describes the directory: the chain it names
 * ends at the newest database backup, every link's sidecar and file are there (by name, from one
 * readdir), and the newest's sidecar and file match it. A day of deltas at 30 s is 2,880 sidecars:
 * reading and judging them all each run cost more than the run itself. Anything else (a rotate merged
 * or removed deltas, a plain backup is newer, a file is missing) falls back to the whole listing.
 */
async function quickPlan(
  dir: string,
  dbPath: string,
  map: PageMap,
  run: DatabaseRunOptions,
  now: Date,
  recipients?: Recipient[],
): Promise<{ previous: BackupEntry; next: NextDeltaLevel } | undefined> {
  const chain = map.chain;
  const last = chain?.links.at(-1);
  if (!chain || !last || run.full || chain.dbPath !== dbPath || last.id !== map.id) return undefined;
  const names = new Set(await fsp.readdir(dir).catch(() => [] as string[]));
  let newest: string | undefined;
  for (const n of names) {
    const p = parseName(n);
    if (p && !p.temp && p.type === 'database' && p.rest === '.json' && (!newest || compareIds(p.id, newest) > 0)) newest = p.id;
  }
  if (newest !== map.id) return undefined;
  for (const l of chain.links) if (!names.has(l.file) || !names.has(`${baseName('database', l.id)}.json`)) return undefined;
  // every link's file at its size, as the listing would judge it: a delta built on a cut-short link
  // would be a state no restore can rebuild
  const sizes = await Promise.all(
    chain.links.map((l) =>
      fsp.stat(path.join(dir, l.file)).then(
        (st) => st.size,
        () => -1,
      ),
    ),
  );
  if (chain.links.some((l, i) => sizes[i] !== l.size)) return undefined;
  const scFile = path.join(dir, `${baseName('database', map.id)}.json`);
  const text = await fsp.readFile(scFile, 'utf8').catch(() => undefined);
  const top = text === undefined ? undefined : parseSidecar(text, 'database', map.id).sidecar;
  if (!top || top.level === undefined || path.basename(top.backup_path ?? '') !== last.file || top.file_size !== last.size) return undefined;
  const sidecars = new Map<string, DeltaSidecar>(
    chain.links.map((l, i) => [
      l.id,
      {
        id: l.id,
        level: i,
        previous: i ? chain.links[i - 1].id : undefined,
        file_size: l.size,
        created_at: i ? undefined : chain.baseCreatedAt,
        original_path: dbPath,
      },
    ]),
  );
  sidecars.set(top.id, top as DeltaSidecar);
  const next = nextDeltaLevel(top as DeltaSidecar, (id) => sidecars.get(id), {
    full: run.full,
    fullEveryMs: run.fullEveryMs ?? DEFAULT_DB_FULL_EVERY_MS,
    maxShare: MAX_DELTA_SHARE,
    now,
    dbPath,
    encryptTo: recipients?.map(describeRecipient),
  });
  return { previous: { id: top.id, type: 'database', status: 'ok', sidecar: top } as BackupEntry, next };
}

/** The page hashes of a chain's state at `id`, from its level 0 file and its deltas' indexes. */
async function rebuildPageMap(dir: string, entries: BackupEntry[], id: string): Promise<PageMap | undefined> {
  const byId = new Map(entries.filter((e) => e.status === 'ok').map((e) => [e.id, e]));
  const chain = deltaChain(id, (cid) => byId.get(cid)?.sidecar as never);
  if (!chain) return undefined;
  const base = byId.get(chain[0])!.sidecar!;
  const pageSize = base.sqlite?.page_size;
  // an encrypted chain's hashes come from the cache only: a run has no key to read its files
  if (!pageSize || !base.backup_path || base.encryption) return undefined;
  const parts: Buffer[] = [];
  await readFilePages(path.join(dir, path.basename(base.backup_path)), pageSize, (_n, page) => {
    parts.push(pageHash(page));
  });
  let hashes: Buffer = Buffer.concat(parts);
  for (const cid of chain.slice(1)) {
    const idx = await readPageDeltaIndex(path.join(dir, path.basename(byId.get(cid)!.sidecar!.backup_path!)));
    if (idx.pageSize !== pageSize) return undefined;
    hashes = resize(hashes, idx.pageCount);
    for (const e of idx.entries) e.hash.copy(hashes, (e.pgno - 1) * PAGE_HASH_SIZE);
  }
  return { id, pageSize, hashes, chain: chainSummary(entries, id) };
}

function resize(hashes: Buffer, pageCount: number): Buffer {
  const want = pageCount * PAGE_HASH_SIZE;
  if (hashes.length === want) return hashes;
  if (hashes.length > want) return hashes.subarray(0, want);
  const grown = Buffer.alloc(want);
  hashes.copy(grown);
  return grown;
}

/** The database backup a delta run follows: the newest good one of an incremental chain of this database. */
function previousOf(entries: BackupEntry[], dbPath: string): BackupEntry | undefined {
  const e = entries.find((x) => x.status === 'ok' && x.sidecar?.original_path !== undefined);
  if (!e || e.sidecar?.level === undefined) return undefined;
  return path.resolve(e.sidecar.original_path!) === path.resolve(dbPath) ? e : undefined;
}

/** Which level the next incremental database backup is. */
export async function planDatabaseRun(
  cfg: Config,
  run: DatabaseRunOptions,
  now: Date,
  recipients?: Recipient[],
): Promise<{ entries: BackupEntry[]; previous?: BackupEntry; next: NextDeltaLevel }> {
  const entries = await listBackups(cfg.backupDir, { type: 'database' });
  const previous = previousOf(entries, cfg.dbPath);
  const byId = new Map(entries.filter((e) => e.status === 'ok').map((e) => [e.id, e.sidecar]));
  const next = nextDeltaLevel(previous?.sidecar, (id) => byId.get(id) as never, {
    full: run.full,
    fullEveryMs: run.fullEveryMs ?? DEFAULT_DB_FULL_EVERY_MS,
    maxShare: MAX_DELTA_SHARE,
    now,
    dbPath: path.resolve(cfg.dbPath),
    encryptTo: recipients?.map(describeRecipient),
  });
  return { entries, previous, next };
}

/**
 * One incremental database backup: a level 0 (the ordinary `db_backup_<id>.db` copy, plus its page
 * hashes in the cache) or a level N (`db_backup_<id>.pgdelta`: the pages that differ from the previous
 * state of the chain). The sidecar, written last, commits it like every backup.
 *
 * With recipients, each file is encrypted (`.db.age`, `.pgdelta.age`) from a plaintext `.tmp` that
 * lives only until then, as the plain database backup's copy does; the whole chain to one set of
 * recipients. The page hashes the next run compares against are kept outside the backup directory.
 */
export async function backupDatabaseIncremental(
  cfg: Config,
  id: string,
  createdAt: Date,
  run: DatabaseRunOptions,
  signal?: AbortSignal,
  recipients?: Recipient[],
): Promise<DeltaBackup> {
  const started = Date.now();
  const dir = typeDir(cfg.backupDir, 'database');
  await ensureDir(dir);
  const dbPath = path.resolve(cfg.dbPath);
  let cacheFile: string | undefined = path.join(dir, PAGEMAP);
  if (recipients) {
    const stateDir = await plaintextManifestDir(cfg);
    cacheFile = stateDir && path.join(stateDir, ENCRYPTED_PAGEMAP);
  }
  let map = cacheFile && !run.full ? await readPageMap(cacheFile) : undefined;
  const quick = map && (await quickPlan(dir, dbPath, map, run, createdAt, recipients));
  const { entries, previous, next } = quick ? { entries: [] as BackupEntry[], ...quick } : await planDatabaseRun(cfg, run, createdAt, recipients);
  let reason = next.reason;
  if (next.level === 0) map = undefined;
  else {
    if (map?.id !== previous!.id) map = await rebuildPageMap(dir, entries, previous!.id).catch(() => undefined);
    // a cache of an older version, without the chain: the listing at hand gives it
    else if (map && !map.chain && !quick) map.chain = chainSummary(entries, previous!.id);
    if (!map)
      reason = previous!.sidecar?.encryption
        ? `the page hashes of encrypted database backup ${previous!.id} are not in the state directory${cacheFile ? ` (${path.dirname(cacheFile)})` : ''}`
        : `the page hashes of database backup ${previous!.id} could not be read`;
  }
  const saveMap = async (m: PageMap) => {
    if (cacheFile) await writePageMap(cacheFile, m).catch(() => {});
  };
  /** `plain` encrypted into `name` beside it (PartWriter: `.tmp` until committed), then removed. */
  const encryptInto = async (plain: string, name: string): Promise<{ size: number; checksum: string; encryption: EncryptionInfo }> => {
    const w = new PartWriter(dir, name);
    try {
      const encryption = await encryptFileInto(plain, w, recipients!);
      const { size, checksum } = await w.commit();
      return { size, checksum, encryption };
    } catch (err) {
      await w.abort();
      throw err;
    } finally {
      await fsp.rm(plain, { force: true });
    }
  };
  const sidecarBase = (): WrittenSidecar => ({
    format: SIDECAR_FORMAT,
    tool: TOOL,
    id,
    type: 'database',
    timestamp: id.slice(0, 15),
    created_at: createdAt.toISOString(),
    duration_ms: 0,
    original_path: dbPath,
  });
  const sc = sidecarPath(cfg.backupDir, 'database', id);

  if (!map) {
    // level 0: today's copy, unchanged and readable by sqlite3; its page hashes go to the cache
    const plainName = `${baseName('database', id)}.db`;
    const name = recipients ? plainName + AGE_EXTENSION : plainName;
    const final = path.join(dir, name);
    const tmp = path.join(dir, `${plainName}.tmp`);
    try {
      faultPoint('database-copy');
      const info = await backupDatabase(dbPath, tmp);
      signal?.throwIfAborted();
      const parts: Buffer[] = [];
      await readFilePages(tmp, info.page_size, (_n, page) => {
        parts.push(pageHash(page));
      });
      let checksum: string;
      let size: number;
      let encryption: EncryptionInfo | undefined;
      if (recipients) ({ checksum, size, encryption } = await encryptInto(tmp, name));
      else {
        ({ checksum, size } = await sha256File(tmp));
        await fsp.rename(tmp, final);
      }
      const sidecar: WrittenSidecar = {
        ...sidecarBase(),
        duration_ms: Date.now() - started,
        backup_path: name,
        file_size: size,
        checksum,
        compression: 'none',
        sqlite: info,
        encryption,
        level: 0,
        base: id,
        references: [id],
      };
      await writeFileAtomic(sc, `${JSON.stringify(sidecar, null, 2)}\n`);
      await saveMap({
        id,
        pageSize: info.page_size,
        hashes: Buffer.concat(parts),
        chain: { dbPath, baseCreatedAt: sidecar.created_at!, links: [{ id, file: name, size }] },
      });
      return { id, sidecarPath: sc, files: [final, sc], size, checksum, durationMs: sidecar.duration_ms, level: 0, pages: info.page_count, reason };
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      removeSqliteSidecars(tmp);
      await fsp.rm(final, { force: true });
      throw toBackupError(err, 'database backup');
    }
  }

  // level N: pages of a snapshot whose hash differs from the chain's newest state
  const prev = previous!.sidecar!;
  const plainName = `${baseName('database', id)}${PAGE_DELTA_EXTENSION}`;
  const name = recipients ? plainName + AGE_EXTENSION : plainName;
  const final = path.join(dir, name);
  // encrypted: the delta is written in plaintext under a temp name (removed by the next run if killed)
  const plainFile = recipients ? path.join(dir, `${plainName}.plain.tmp`) : final;
  let writer: PageDeltaWriter | undefined;
  const hashes = map.hashes;
  const changed: { pgno: number; hash: Buffer }[] = [];
  try {
    const snapshot = await readSnapshotPages(
      dbPath,
      async (pgno, page) => {
        if (!writer) throw new Error('no writer');
        const h = pageHash(page);
        const at = (pgno - 1) * PAGE_HASH_SIZE;
        if (at + PAGE_HASH_SIZE <= hashes.length && h.equals(hashes.subarray(at, at + PAGE_HASH_SIZE))) return;
        changed.push({ pgno, hash: h });
        await writer.add(pgno, page, h);
      },
      {
        copyPath: path.join(dir, `${baseName('database', id)}.snapshot.tmp`),
        signal,
        // the header needs the snapshot's size, known only once its read transaction has begun
        onSnapshot: async (pageSize, pageCount) => {
          if (pageSize !== map.pageSize) throw new PageSizeChanged();
          writer = new PageDeltaWriter(plainFile, { pageSize, pageCount, createdMs: createdAt.getTime() });
          await writer.open();
          faultPoint('database-copy');
        },
      },
    );
    signal?.throwIfAborted();
    const written = await writer!.commit();
    const { pages } = written;
    let { size, checksum } = written;
    let encryption: EncryptionInfo | undefined;
    if (recipients) ({ size, checksum, encryption } = await encryptInto(plainFile, name));
    faultPoint('delta-written');
    const sidecar: WrittenSidecar = {
      ...sidecarBase(),
      duration_ms: Date.now() - started,
      backup_path: name,
      file_size: size,
      checksum,
      compression: 'none',
      sqlite: {
        page_size: snapshot.pageSize,
        page_count: snapshot.pageCount,
        journal_mode: snapshot.journalMode,
        // a delta is no database on its own: the state it completes is checked on every restore
        integrity: 'not checked (page delta)',
        tables: snapshot.tables,
        table_rows: snapshot.tableRows,
      },
      encryption,
      level: next.level,
      base: prev.base ?? previous!.id,
      previous: previous!.id,
      references: [previous!.id, id],
      snapshot_at: snapshot.at.toISOString(),
      pages,
    };
    // one line: thousands of deltas a day, and a run that finds nothing changed should add about 1 KB
    await writeFileAtomic(sc, `${JSON.stringify(sidecar)}\n`);
    const newHashes = resize(Buffer.from(hashes), snapshot.pageCount);
    for (const c of changed) if (c.pgno <= snapshot.pageCount) c.hash.copy(newHashes, (c.pgno - 1) * PAGE_HASH_SIZE);
    const chain = map.chain && { ...map.chain, links: [...map.chain.links, { id, file: name, size }] };
    await saveMap({ id, pageSize: snapshot.pageSize, hashes: newHashes, chain });
    return { id, sidecarPath: sc, files: [final, sc], size, checksum, durationMs: sidecar.duration_ms, level: next.level, pages };
  } catch (err) {
    await writer?.abort();
    await fsp.rm(final, { force: true });
    await fsp.rm(plainFile, { force: true });
    if (err instanceof PageSizeChanged) {
      if (cacheFile) await fsp.rm(cacheFile, { force: true });
      return backupDatabaseIncremental(cfg, id, createdAt, { ...run, full: true }, signal, recipients);
    }
    throw toBackupError(err, 'database backup');
  }
}

class PageSizeChanged extends BackupError {
  constructor() {
    super('FAILED', 'the database page size changed: a new level 0 is needed');
  }
}
