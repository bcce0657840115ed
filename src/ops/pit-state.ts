import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { readDeltaPage, verifyPageDelta, type PageDeltaEntry } from '../archive/page-delta.js';
import type { BackupEntry } from '../catalog/local-store.js';
import { typeDir } from '../catalog/names.js';
import { deltaChain } from '../catalog/page-chain.js';
import type { Sidecar } from '../catalog/sidecar.js';
import { BackupError, toBackupError } from '../errors.js';
import { createExclusive } from '../fsutil.js';
import { removeSqliteSidecars, tableRows } from '../sources/sqlite.js';
import { decryptStage, plaintextProblem } from '../crypto/age-artifact.js';
import type { Identity } from '../crypto/age-keys.js';
import { faultPoint } from './fault-point.js';
import { requireKey } from './file-manifest.js';

/*
 * A state of a page chain rebuilt from its level 0 and deltas, apart from restoring it (pit.ts): restore
 * --from and drill --from rebuild a downloaded chain with it, and restore.ts cannot import pit.ts,
 * which imports it.
 */

export interface RebuiltDatabase {
  file: string;
  pageCount: number;
  /** deltas applied on top of the level 0 */
  deltas: number;
}

/** Copies `from` into the new private file `to` and returns the sha256 of what was written. */
async function copyHashing(from: string, to: string): Promise<string> {
  const hash = createHash('sha256');
  const out = await createExclusive(to);
  await pipeline(
    createReadStream(from, { highWaterMark: 1 << 20 }),
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        done(null, chunk);
      },
    }),
    out.createWriteStream({ highWaterMark: 1 << 20 }),
  );
  return hash.digest('hex');
}

/**
 * Rebuilds the state `id` into `staging`: its chain's level 0 copied, then for every page the newest
 * version among the chain's deltas written once (the union of their page maps: no replay), the file cut
 * to the state's size. Every delta is checked whole first (its checksum and every page's hash); the
 * result must match the tables and row counts recorded at backup time (integrity_check: see checkState).
 * An encrypted chain's files are decrypted with `identities` (the level 0 into the staging file, each
 * delta into a temp file beside it, removed when done), each checked against its plaintext checksum.
 */
export async function rebuildState(dir: string, entries: BackupEntry[], id: string, staging: string, identities: Identity[] = []): Promise<RebuiltDatabase> {
  const byId = new Map(entries.filter((e) => e.type === 'database' && e.status === 'ok').map((e) => [e.id, e]));
  const chain = deltaChain(id, (cid) => byId.get(cid)?.sidecar as never);
  if (!chain)
    throw new BackupError('DAMAGED', `database backup ${id} cannot be rebuilt: a backup of its chain is missing or damaged`, {
      hint: 'restore to another moment',
    });
  const fileOf = (cid: string) => path.join(dir, path.basename(byId.get(cid)!.sidecar!.backup_path!));
  const base = byId.get(chain[0])!.sidecar!;
  const decrypted: string[] = [];
  // decrypted into a new private file, as the plain copy is (never through a planted link), and checked
  // against the recorded plaintext size and checksum
  const decrypt = async (s: Sidecar, to: string) => {
    const stage = decryptStage({ identities, subject: `database backup ${s.id}`, info: s.encryption! });
    const out = await createExclusive(to);
    await pipeline(createReadStream(fileOf(s.id), { highWaterMark: 1 << 20 }), stage, out.createWriteStream({ highWaterMark: 1 << 20 }));
    const problem = plaintextProblem(stage, s.encryption!);
    if (problem) throw new BackupError('DAMAGED', `database backup ${s.id}: ${problem}`, { hint: 'restore to another moment' });
  };
  // no key: exit 2 naming --identity before anything is read or written
  for (const cid of chain) {
    const cs = byId.get(cid)!.sidecar!;
    if (cs.encryption) requireKey(identities, `database backup ${cid}`, cs.encryption);
  }
  const target = byId.get(id)!.sidecar!;
  const pageSize = base.sqlite!.page_size;
  await fsp.rm(staging, { force: true });
  removeSqliteSidecars(staging);
  try {
    // the level 0 is checked against its checksum as it is copied (the bytes hashed are the bytes written,
    // so a file swapped on the backup disk between a check and a copy cannot slip in); the deltas by
    // their own checksums. The copy is 0600 from its creation and never written through a planted link.
    // An encrypted level 0 is decrypted into it instead: age authenticates it, and its recorded
    // plaintext checksum is checked as it is written.
    if (base.encryption) await decrypt(base, staging);
    else {
      const checksum = await copyHashing(fileOf(chain[0]), staging);
      if (checksum !== base.checksum)
        throw new BackupError('DAMAGED', `database backup ${base.id} does not match its checksum`, { hint: 'restore to another moment' });
    }
    faultPoint('pit-base');
    const newest = new Map<number, { file: number; entry: PageDeltaEntry }>();
    let pageCount = base.sqlite!.page_count;
    const files = chain.slice(1).map(fileOf);
    for (let i = 0; i < files.length; i++) {
      const s = byId.get(chain[i + 1])!.sidecar!;
      if (s.encryption) {
        files[i] = `${staging}.d${i}`;
        decrypted.push(files[i]);
        await decrypt(s, files[i]);
      }
      const idx = await verifyPageDelta(files[i]);
      if (idx.pageSize !== pageSize) throw new BackupError('DAMAGED', `database backup ${s.id} has pages of ${idx.pageSize} bytes, its chain ${pageSize}`);
      const size = s.encryption ? s.encryption.plaintext_size : s.file_size;
      if (idx.size !== size) throw new BackupError('DAMAGED', `database backup ${s.id} is ${idx.size} bytes, its metadata says ${size}`);
      pageCount = idx.pageCount;
      for (const e of idx.entries) newest.set(e.pgno, { file: i, entry: e });
    }
    const out = await fsp.open(staging, 'r+');
    const handles = new Map<number, fsp.FileHandle>();
    try {
      for (const pgno of [...newest.keys()].sort((a, b) => a - b)) {
        if (pgno > pageCount) continue;
        const { file, entry } = newest.get(pgno)!;
        let fh = handles.get(file);
        if (!fh) {
          fh = await fsp.open(files[file], 'r');
          handles.set(file, fh);
        }
        const page = await readDeltaPage(fh, files[file], entry, pageSize);
        // a live WAL database's header says WAL: the rebuilt file is a standalone copy like the level 0
        if (pgno === 1) page[18] = page[19] = 1;
        await out.write(page, 0, pageSize, (pgno - 1) * pageSize);
      }
      await out.truncate(pageCount * pageSize);
      await out.sync();
    } finally {
      for (const fh of handles.values()) await fh.close();
      await out.close();
    }
    faultPoint('pit-rebuilt');
    checkState(staging, target);
    return { file: staging, pageCount, deltas: chain.length - 1 };
  } catch (err) {
    await fsp.rm(staging, { force: true });
    removeSqliteSidecars(staging);
    throw toBackupError(err, `rebuilding database state ${id}`);
  } finally {
    for (const f of decrypted) await fsp.rm(f, { force: true });
  }
}

/**
 * The recorded tables and row counts, never optional. PRAGMA integrity_check follows in the restore
 * itself (restoreLocked checks every database it is given before the live one is touched, and once
 * more after writing it): run here too it would cost a third read of the whole database.
 */
function checkState(file: string, target: Sidecar): void {
  const fail = (why: string) =>
    new BackupError('DAMAGED', `the database rebuilt for ${target.id} fails its checks: ${why}`, { hint: 'restore to another moment' });
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw fail(`it does not open: ${(err as Error).message}`);
  }
  try {
    const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n;
    const want = target.sqlite;
    if (want && tables !== want.tables) throw fail(`${tables} tables, ${want.tables} recorded`);
    const got = tableRows(db);
    for (const [name, rows] of Object.entries(want?.table_rows ?? {})) {
      if (got[name] !== rows) throw fail(`table ${name} has ${got[name] ?? 'no'} rows, ${rows} recorded`);
    }
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw fail((err as Error).message);
  } finally {
    db.close();
  }
}

/**
 * A page delta as a database backup whose file is the state it completes: rebuilt into `staging` (and
 * checked) from its chain in `backupDir`. What restore and drill hand to the ordinary restore.
 */
export async function stageState(
  backupDir: string,
  entries: BackupEntry[],
  entry: BackupEntry,
  staging: string,
  identities?: Identity[],
): Promise<{ entry: BackupEntry; deltas: number }> {
  const rebuilt = await rebuildState(typeDir(backupDir, 'database'), entries, entry.id, staging, identities);
  return {
    entry: {
      ...entry,
      sidecarPath: path.join(path.dirname(staging), `${path.basename(staging)}.json`),
      // the staged state is plaintext, whatever its chain's files were
      sidecar: { ...entry.sidecar!, backup_path: path.basename(staging), encryption: undefined },
    },
    deltas: rebuilt.deltas,
  };
}
