import { formatBytes } from '../human.js';

/**
 * Chains of incremental storage backups, from sidecars alone (pure, no I/O). A storage backup whose
 * sidecar lists `references` needs the archives of those backups to be restored: rotation keeps them,
 * listing calls the backup damaged when one is gone, verify checks them, sync sends them along.
 */
export interface ChainItem {
  id: string;
  /** ids whose archives its manifest references (itself included); undefined for single-archive backups */
  references?: string[];
}

/** The backups whose manifests make up a storage backup's file list, oldest first (a level 0: itself). */
export const manifestChain = (id: string, sidecar: { chain?: string[] }): string[] => sidecar.chain ?? [id];

/** The other backups whose archives `item` needs. */
export function pinsOf(item: ChainItem): string[] {
  return (item.references ?? []).filter((r) => r !== item.id);
}

/** For each kept backup, the backups it pins; and every id that must stay because a kept backup pins it. */
export function pinnedByKept(items: ChainItem[], keptIds: Iterable<string>): { pins: Map<string, string[]>; pinned: Map<string, string[]> } {
  const byId = new Map(items.map((i) => [i.id, i]));
  const pins = new Map<string, string[]>();
  const pinned = new Map<string, string[]>();
  for (const id of keptIds) {
    const item = byId.get(id);
    if (!item) continue;
    // transitively: a pinned backup stays a restorable backup itself, not just an archive
    const seen = new Set<string>([id]);
    const queue = pinsOf(item);
    const p: string[] = [];
    while (queue.length) {
      const next = queue.shift()!;
      if (seen.has(next)) continue;
      seen.add(next);
      p.push(next);
      const dep = byId.get(next);
      if (dep) queue.push(...pinsOf(dep));
    }
    if (!p.length) continue;
    pins.set(id, p);
    for (const target of p) {
      const by = pinned.get(target) ?? [];
      by.push(id);
      pinned.set(target, by);
    }
  }
  return { pins, pinned };
}

export interface ChainSidecar {
  id: string;
  /** a base without it is treated as too old: a new level 0 */
  created_at?: string;
  level?: number;
  base?: string;
  content_bytes?: number;
  references?: string[];
  referenced_bytes?: Record<string, number>;
  manifest?: unknown;
  encryption?: { recipients: string[] };
}

export interface NextLevel {
  level: number;
  /** why a new level 0 */
  reason?: string;
  /**
   * the level 0 was asked for (--full) or is the chain's ordinary renewal (--full-every, waste): said
   * in the result, not warned about, so that a cron mail with a warning means something
   */
  routine?: boolean;
}

/**
 * The level of the next storage backup after `previous`: 0 when forced, when there is no previous
 * manifest, when the chain's base is `fullEveryMs` old, or when the archives the chain holds carry
 * more than `maxWaste` of the base's size in content no longer referenced (changed or removed files).
 */
export function nextLevel(
  previous: ChainSidecar | undefined,
  sidecars: (id: string) => ChainSidecar | undefined,
  options: {
    full?: boolean;
    fullEveryMs: number;
    maxWaste: number;
    now: Date;
    /** the recipients this run encrypts to (as sidecars name them); undefined: not encrypted */
    recipients?: string[];
  },
): NextLevel {
  if (options.full) return { level: 0, reason: 'a full (level 0) backup was asked for', routine: true };
  if (!previous?.manifest || previous.level === undefined) return { level: 0, reason: 'no earlier incremental storage backup' };
  const base = sidecars(previous.base ?? previous.id);
  if (!base) return { level: 0, reason: `the chain's base ${previous.base} is gone` };
  // a chain is restored with one key: every archive it needs must be encrypted to exactly this run's
  // recipients (or none), else a new key could not restore the backup it just made
  const keyOf = (s: ChainSidecar | undefined) => [...(s?.encryption?.recipients ?? [])].sort().join('\n');
  const want = [...(options.recipients ?? [])].sort().join('\n');
  for (const id of new Set([previous.id, ...(previous.references ?? [])])) {
    const s = id === previous.id ? previous : sidecars(id);
    if (keyOf(s) === want) continue;
    return {
      level: 0,
      reason: options.recipients?.length
        ? s?.encryption
          ? `the chain's storage backup ${id} is encrypted to other recipients`
          : `the chain's storage backup ${id} is not encrypted`
        : `the chain's storage backup ${id} is encrypted and this backup is not`,
    };
  }
  const age = options.now.getTime() - Date.parse(base.created_at ?? '');
  if (!(age < options.fullEveryMs)) return { level: 0, reason: `the chain's base ${base.id} is older than --full-every`, routine: true };
  let stored = 0;
  let used = 0;
  for (const id of previous.references ?? []) {
    stored += sidecars(id)?.content_bytes ?? 0;
    used += previous.referenced_bytes?.[id] ?? 0;
  }
  const waste = stored - used;
  const baseBytes = base.content_bytes ?? 0;
  if (baseBytes > 0 && waste > options.maxWaste * baseBytes) {
    return {
      level: 0,
      reason: `the chain holds ${formatBytes(waste)} of content no longer in the tree, more than ${Math.round(options.maxWaste * 100)}% of its base`,
      routine: true,
    };
  }
  return { level: previous.level + 1 };
}

export interface JudgedEntry {
  type: string;
  id: string;
  status: string;
  reason?: string;
  sidecar?: { references?: string[] };
}

/**
 * Marks damaged every ok incremental storage backup whose chain lacks a good archive. Statuses are
 * taken before any change, so a backup is judged by the archives it needs, not by their own chains.
 * Local and remote catalogs call it the same way (before full backups are judged by their components).
 */
export function judgeChains(entries: JudgedEntry[]): void {
  const archiveStatus = new Map(entries.filter((e) => e.type === 'storage').map((e) => [e.id, e.status]));
  for (const e of entries) {
    if (e.type !== 'storage' || e.status !== 'ok') continue;
    const lost = pinsOf({ id: e.id, references: e.sidecar?.references }).find((rid) => archiveStatus.get(rid) !== 'ok');
    if (lost === undefined) continue;
    e.status = 'damaged';
    e.reason = `needs the archive of storage backup ${lost}, which is ${archiveStatus.get(lost) ?? 'missing'}`;
  }
}
