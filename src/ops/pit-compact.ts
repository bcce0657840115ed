import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type PageDeltaEntry, PageDeltaWriter, readDeltaPage, verifyPageDelta } from '../archive/page-delta.js';
import { type BackupEntry, listBackups } from '../catalog/local-store.js';
import { baseName, compareIds, sidecarPath, typeDir } from '../catalog/names.js';
import { deltaChain, isPageDelta } from '../catalog/page-chain.js';
import type { Sidecar } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { BackupError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../fsutil.js';
import { PartWriter } from '../archive/parts.js';
import { decryptToFile, encryptFileInto } from '../crypto/age-artifact.js';
import { describeRecipient, type Identity, type Recipient } from '../crypto/age-keys.js';
import { faultPoint } from './fault-point.js';
import { type RestorableState, restorableStates } from './pit.js';

/** Every state of the last day, then one an hour for a week, then one a day (the GFS rules decide further). */
export const KEEP_ALL_MS = 86_400_000;
export const KEEP_HOURLY_MS = 7 * 86_400_000;

export interface CompactResult {
  /** deltas merged into the next kept state and removed */
  merged: { id: string; into: string }[];
  /** kept states whose delta was rewritten to hold the merged pages */
  rewritten: string[];
  /** deltas not kept that no kept state needs (a branch left by a merge cut short, an old chain's top): removed */
  dropped: string[];
  bytesBefore: number;
  bytesAfter: number;
  problems: string[];
}

/**
 * The states retention in time keeps: every state younger than a day, the newest of each hour for a
 * week, the newest of each day before that; the newest state and every level 0 always.
 */
export function statesToKeep(states: RestorableState[], now: Date): Set<string> {
  const keep = new Set<string>();
  const buckets = new Map<string, RestorableState>();
  for (const s of states) {
    const age = now.getTime() - s.at.getTime();
    if (s.level === 0 || age < KEEP_ALL_MS) {
      keep.add(s.id);
      continue;
    }
    const iso = s.at.toISOString();
    const bucket = age < KEEP_HOURLY_MS ? iso.slice(0, 13) : iso.slice(0, 10);
    const had = buckets.get(bucket);
    if (!had || had.at.getTime() < s.at.getTime()) buckets.set(bucket, s);
  }
  for (const s of buckets.values()) keep.add(s.id);
  if (states.length) keep.add(states[states.length - 1].id);
  return keep;
}

/**
 * The states the point-in-time window protects from the count and calendar rules: every state of the
 * last day, the newest of each hour for a week. Older ones, level 0s included, are the rules' to keep
 * (statesToKeep above also keeps one a day and every level 0: merging never removes those, the rules may).
 */
export function windowStates(states: RestorableState[], now: Date): Set<string> {
  const keep = new Set<string>();
  const hours = new Map<string, RestorableState>();
  for (const s of states) {
    const age = now.getTime() - s.at.getTime();
    if (age < KEEP_ALL_MS) keep.add(s.id);
    else if (age < KEEP_HOURLY_MS) {
      const hour = s.at.toISOString().slice(0, 13);
      const had = hours.get(hour);
      if (!had || had.at.getTime() < s.at.getTime()) hours.set(hour, s);
    }
  }
  for (const s of hours.values()) keep.add(s.id);
  return keep;
}

/**
 * Retention in time for page chains, done by `rotate` before its count and GFS rules: a delta that is
 * not kept is merged into the next kept state of its chain (the union of their page maps, newest page
 * wins: no replay), which then names the kept state below as its `previous`. Crash-safe in this order:
 * the merged delta is written under a new name, its sidecar is replaced atomically (the commit), then
 * the old file and the merged deltas go, newest first, so whatever a kill leaves is a valid chain or a
 * dead branch nothing needs (removed by the next rotate).
 */
export async function compactPageChains(
  cfg: Config,
  opts: {
    now?: Date;
    dryRun?: boolean;
    signal?: AbortSignal;
    /** an encrypted chain's deltas are merged only with a key to read them and its recipients to encrypt the merge to */
    identities?: Identity[];
    recipients?: Recipient[];
  } = {},
): Promise<CompactResult> {
  const now = opts.now ?? new Date();
  const result: CompactResult = { merged: [], rewritten: [], dropped: [], bytesBefore: 0, bytesAfter: 0, problems: [] };
  const entries = await listBackups(cfg.backupDir, { type: 'database' });
  const dir = typeDir(cfg.backupDir, 'database');
  const byId = new Map(entries.filter((e) => e.status === 'ok').map((e) => [e.id, e]));
  // a kill after a merge committed leaves the state's previous file beside it: named by no sidecar
  if (!opts.dryRun)
    for (const e of entries) {
      if (e.status !== 'ok' || !isPageDelta(e.sidecar)) continue;
      const current = path.basename(e.sidecar!.backup_path!);
      for (const f of e.files) if (/\.pgdelta(\.age)?$/.test(f) && path.basename(f) !== current) await fsp.rm(f, { force: true });
    }
  const states = restorableStates(entries);
  const keep = statesToKeep(states, now);
  // the kept deltas, oldest first: each absorbs the unkept deltas right below it
  const keptDeltas = states.filter((s) => s.level > 0 && keep.has(s.id)).map((s) => byId.get(s.id)!);
  for (const top of keptDeltas.sort((a, b) => compareIds(a.id, b.id))) {
    opts.signal?.throwIfAborted();
    const chain = deltaChain(top.id, (id) => byId.get(id)?.sidecar as never);
    if (!chain) continue;
    // the deltas between the kept state below and this one
    const below: string[] = [];
    for (let i = chain.length - 2; i > 0 && !keep.has(chain[i]); i--) below.unshift(chain[i]);
    if (!below.length) continue;
    const keptBelow = chain[chain.length - 2 - below.length];
    const group = [...below, top.id].map((id) => byId.get(id)!);
    for (const e of group) result.bytesBefore += e.sidecar!.file_size ?? 0;
    if (opts.dryRun) {
      for (const id of below) result.merged.push({ id, into: top.id });
      result.rewritten.push(top.id);
      continue;
    }
    try {
      const merged = await mergeInto(dir, group, keptBelow, top.sidecar!.encryption ? encryptionFor(top.sidecar!, opts) : undefined);
      result.bytesAfter += merged.file_size ?? 0;
      top.sidecar = merged;
      for (const id of below) result.merged.push({ id, into: top.id });
      result.rewritten.push(top.id);
      // merged deltas are gone from the chain: later kept deltas must not find them
      for (const id of below) byId.delete(id);
    } catch (err) {
      if (!(err instanceof BackupError)) throw err;
      result.problems.push(`database ${top.id}: not compacted: ${err.message}`);
    }
  }
  // what is left of the unkept: deltas no kept state's chain passes through, removed newest first
  if (!opts.dryRun) {
    const needed = new Set<string>();
    for (const id of keep) for (const cid of deltaChain(id, (x) => byId.get(x)?.sidecar as never) ?? []) needed.add(cid);
    const orphans = [...byId.values()].filter((e) => isPageDelta(e.sidecar) && !keep.has(e.id) && !needed.has(e.id)).sort((a, b) => compareIds(b.id, a.id));
    for (const e of orphans) {
      await fsp.rm(e.sidecarPath!, { force: true });
      await fsp.rm(path.join(dir, path.basename(e.sidecar!.backup_path!)), { force: true });
      result.dropped.push(e.id);
    }
    if (orphans.length) await fsyncDir(dir);
  }
  return result;
}

/** The key and recipients to merge an encrypted chain's deltas with; throws (the chain is left as it is) when either is not at hand. */
function encryptionFor(s: Sidecar, opts: { identities?: Identity[]; recipients?: Recipient[] }): { identities: Identity[]; recipients: Recipient[] } {
  const want = [...(s.encryption?.recipients ?? [])].sort().join(' ');
  const have = (opts.recipients ?? []).map(describeRecipient).sort().join(' ');
  if (!opts.identities?.length || want !== have)
    throw new BackupError('USAGE', 'its deltas are encrypted: merging them needs the key (AGE_IDENTITY_FILE) and the same recipients (BACKUP_RECIPIENTS)', {
      hint: 'every state is kept meanwhile; a new level 0 (--full-every) lets the old chain go by the rules',
    });
  return { identities: opts.identities, recipients: opts.recipients! };
}

async function mergeInto(
  dir: string,
  group: BackupEntry[],
  keptBelow: string,
  encrypted?: { identities: Identity[]; recipients: Recipient[] },
): Promise<Sidecar> {
  const top = group.at(-1)!;
  const s = top.sidecar!;
  const files = group.map((e) => path.join(dir, path.basename(e.sidecar!.backup_path!)));
  // encrypted deltas are read from plaintext temp copies (`….tmp`: removed by the next run if killed)
  const temps: string[] = [];
  const tag = Date.now().toString(36);
  const newest = new Map<number, { file: number; entry: PageDeltaEntry }>();
  let pageSize = 0;
  let pageCount = 0;
  // a new name each time: the committed file of this state is never overwritten
  const plainName = `${baseName('database', top.id)}.m${tag}.pgdelta`;
  const name = encrypted ? `${plainName}.age` : plainName;
  const plainFile = path.join(dir, encrypted ? `${plainName}.plain.tmp` : plainName);
  let writer: PageDeltaWriter | undefined;
  const handles = new Map<number, fsp.FileHandle>();
  let committed: { size: number; checksum: string; pages: number; encryption?: Sidecar['encryption'] };
  try {
    for (const [i, e] of group.entries()) {
      const es = e.sidecar!;
      if (es.encryption) {
        if (!encrypted) throw new BackupError('USAGE', `database backup ${es.id} is encrypted, the state it merges into is not`);
        const tmp = path.join(dir, `${baseName('database', top.id)}.m${tag}.${i}.plain.tmp`);
        temps.push(tmp);
        await decryptToFile(createReadStream(files[i]), tmp, { identities: encrypted.identities, subject: `database backup ${es.id}`, info: es.encryption });
        files[i] = tmp;
      }
    }
    for (const [i, f] of files.entries()) {
      const idx = await verifyPageDelta(f);
      pageSize = idx.pageSize;
      pageCount = idx.pageCount;
      for (const e of idx.entries) newest.set(e.pgno, { file: i, entry: e });
    }
    writer = new PageDeltaWriter(plainFile, { pageSize, pageCount, createdMs: Date.parse(s.created_at ?? '') || Date.now() });
    await writer.open();
    for (const pgno of [...newest.keys()].sort((a, b) => a - b)) {
      if (pgno > pageCount) continue;
      const { file, entry } = newest.get(pgno)!;
      let fh = handles.get(file);
      if (!fh) {
        fh = await fsp.open(files[file], 'r');
        handles.set(file, fh);
      }
      await writer.add(pgno, await readDeltaPage(fh, files[file], entry, pageSize), entry.hash);
    }
    committed = await writer.commit();
    for (const fh of handles.values()) await fh.close();
    handles.clear();
    if (encrypted) {
      const w = new PartWriter(dir, name);
      try {
        const encryption = await encryptFileInto(plainFile, w, encrypted.recipients);
        committed = { ...(await w.commit()), pages: committed.pages, encryption };
      } catch (err) {
        await w.abort();
        throw err;
      }
    }
  } catch (err) {
    await writer?.abort();
    throw err;
  } finally {
    for (const fh of handles.values()) await fh.close();
    if (encrypted) await fsp.rm(plainFile, { force: true });
    for (const t of temps) await fsp.rm(t, { force: true });
  }
  faultPoint('compact-written');
  const sidecar: Sidecar = {
    ...s,
    backup_path: name,
    file_size: committed.size,
    checksum: committed.checksum,
    encryption: committed.encryption ?? s.encryption,
    pages: committed.pages,
    previous: keptBelow,
    references: [keptBelow, top.id],
    merged: [...(s.merged ?? []), ...group.slice(0, -1).map((e) => e.id)],
  };
  await writeFileAtomic(sidecarPath(path.dirname(dir), 'database', top.id), `${JSON.stringify(sidecar)}\n`);
  faultPoint('compact-committed');
  // the old file of the kept state, then the merged deltas newest first
  await fsp.rm(files.at(-1)!, { force: true });
  for (const e of group.slice(0, -1).reverse()) {
    await fsp.rm(e.sidecarPath!, { force: true });
    await fsp.rm(path.join(dir, path.basename(e.sidecar!.backup_path!)), { force: true });
  }
  await fsyncDir(dir);
  return sidecar;
}
