import { compareIds } from './names.js';
/**
 * Chains of incremental database backups (page deltas), from sidecars alone (pure, no I/O). A level 0
 * is an ordinary database copy; a level N holds the pages that differ from `previous`. Unlike a storage
 * backup, whose sidecar lists its whole chain, a delta names only `previous` in `references`: a chain
 * at 30 s holds thousands of deltas a day, and rotation pins transitively (catalog/chain.ts), so one
 * link each is enough and every sidecar stays small.
 */
export interface DeltaSidecar {
  id: string;
  created_at?: string;
  level?: number;
  base?: string;
  previous?: string;
  file_size?: number;
  original_path?: string;
  encryption?: { recipients?: string[] };
  sqlite?: { page_size: number };
}

export interface NextDeltaLevel {
  level: number;
  reason?: string;
}

/** A delta (level > 0) of a page chain: `.pgdelta`, or `.pgdelta.age` when encrypted (here or by an encrypting remote). */
export const isPageDelta = (s: { level?: number; backup_path?: string } | undefined): boolean =>
  !!s && (s.level ?? 0) > 0 && /\.pgdelta(\.age)?$/.test(s.backup_path ?? '');

/** The ids from the chain's level 0 to `id`, oldest first; undefined when a link is missing. */
export function deltaChain(id: string, sidecars: (id: string) => DeltaSidecar | undefined): string[] | undefined {
  const ids: string[] = [];
  let cur = sidecars(id);
  while (cur) {
    ids.push(cur.id);
    if (!cur.level) return ids.reverse();
    if (!cur.previous || ids.length > 1_000_000) return undefined;
    cur = sidecars(cur.previous);
  }
  return undefined;
}

/**
 * The level of the next database backup after `previous`: 0 when forced, when there is no earlier
 * chain (or it backs up another file, or is encrypted), when the chain's level 0 is `fullEveryMs` old,
 * or when its deltas together hold more than `maxShare` of the level 0's size (a restore would read
 * more deltas than database).
 */
export function nextDeltaLevel(
  previous: DeltaSidecar | undefined,
  sidecars: (id: string) => DeltaSidecar | undefined,
  options: {
    full?: boolean;
    fullEveryMs: number;
    maxShare: number;
    now: Date;
    dbPath: string;
    /** the recipients (as sidecars describe them) this run encrypts to; none: plaintext */
    encryptTo?: string[];
  },
): NextDeltaLevel {
  if (options.full) return { level: 0, reason: 'a full (level 0) backup was asked for' };
  if (!previous || previous.level === undefined) return { level: 0, reason: 'no earlier incremental database backup' };
  if (previous.original_path !== options.dbPath) return { level: 0, reason: `the previous chain backs up ${previous.original_path}` };
  // a chain is encrypted to one set of recipients throughout: a restore needs one key for all of it
  const was = previous.encryption?.recipients ?? [];
  const now = options.encryptTo ?? [];
  if ([...was].sort().join('\n') !== [...now].sort().join('\n'))
    return {
      level: 0,
      reason: !was.length
        ? 'the previous chain is not encrypted'
        : !now.length
          ? 'the previous chain is encrypted'
          : 'the previous chain is encrypted to other recipients',
    };
  const chain = deltaChain(previous.id, sidecars);
  if (!chain) return { level: 0, reason: `the chain of database backup ${previous.id} is incomplete` };
  const base = sidecars(chain[0])!;
  const age = options.now.getTime() - Date.parse(base.created_at ?? '');
  if (!(age < options.fullEveryMs)) return { level: 0, reason: `the chain's level 0 ${base.id} is older than --full-every` };
  let deltas = 0;
  for (const id of chain.slice(1)) deltas += sidecars(id)?.file_size ?? 0;
  const baseBytes = base.file_size ?? 0;
  if (baseBytes > 0 && deltas > options.maxShare * baseBytes)
    return { level: 0, reason: `the chain's deltas hold ${deltas} bytes, more than ${Math.round(options.maxShare * 100)}% of its level 0` };
  return { level: (previous.level ?? 0) + 1 };
}

export interface JudgedDelta {
  type: string;
  id: string;
  status: string;
  reason?: string;
  sidecar?: { level?: number; previous?: string; backup_path?: string };
}

/**
 * Marks damaged every ok database delta whose chain lacks a good link, oldest first, so a gap
 * anywhere below a delta reaches every delta above it.
 */
export function judgeDeltaChains(entries: JudgedDelta[]): void {
  const byId = new Map(entries.filter((e) => e.type === 'database').map((e) => [e.id, e]));
  const deltas = [...byId.values()].filter((e) => isPageDelta(e.sidecar)).sort((a, b) => compareIds(a.id, b.id));
  for (const e of deltas) {
    if (e.status !== 'ok') continue;
    const prev = e.sidecar?.previous ? byId.get(e.sidecar.previous) : undefined;
    if (prev?.status === 'ok') continue;
    e.status = 'damaged';
    e.reason = `needs database backup ${e.sidecar?.previous}, which is ${prev ? (prev.status === 'damaged' ? 'damaged or has a broken chain' : prev.status) : 'missing'}`;
  }
}
