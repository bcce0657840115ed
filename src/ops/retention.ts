/**
 * The retention policy, in the manner of `restic forget`: pure, no I/O. `rotate` lists the catalog,
 * asks this module what to keep, and deletes the rest while holding the lock.
 */
import { pinnedByKept } from '../catalog/chain.js';
import { type BackupType, compareIds } from '../catalog/names.js';

export interface RetentionPolicy {
  /** `--max-backups` / `--keep-last`: the newest N of each type */
  keepLast?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
}

export interface RetentionItem {
  id: string;
  type: BackupType;
  time: Date;
  status: 'ok' | 'incomplete' | 'damaged';
  /** for full backups: the ids of the database and storage backups they consist of */
  components?: { database?: string | null; storage?: string | null };
  /** incremental storage backups: ids of the storage backups whose archives its manifest references; page deltas: the state below */
  references?: string[];
}

export interface RetentionPlan {
  keep: { item: RetentionItem; reasons: string[] }[];
  remove: { item: RetentionItem; reason: string }[];
}

type Rule = 'daily' | 'weekly' | 'monthly' | 'yearly';

const BUCKETS: Record<Rule, (d: Date) => string> = {
  daily: (d) => d.toISOString().slice(0, 10),
  weekly: isoWeek,
  monthly: (d) => d.toISOString().slice(0, 7),
  yearly: (d) => d.toISOString().slice(0, 4),
};

const POLICY_KEYS: Record<Rule, keyof RetentionPolicy> = {
  daily: 'keepDaily',
  weekly: 'keepWeekly',
  monthly: 'keepMonthly',
  yearly: 'keepYearly',
};

const TYPES: BackupType[] = ['full', 'database', 'storage'];

/**
 * Decide which backups to keep. Rules apply to each type on its own, over `ok` backups newest first:
 * the newest `keepLast`, then for each calendar rule the newest backup of each of the N most recent
 * UTC days / ISO weeks / months / years that have one. An empty policy keeps every ok backup: a
 * missing setting must never delete everything. Components of a kept full backup are always kept.
 * Incomplete and damaged backups go only once an ok backup of the same type is newer (before that
 * they may be a run in progress).
 *
 * `now` is accepted for time-window rules; the calendar rules bucket by each backup's own time, so
 * the plan for a given catalog is the same whenever it is computed.
 */
export function planRetention(items: RetentionItem[], policy: RetentionPolicy, window?: { ids: Set<string>; reason: string }): RetentionPlan {
  const reasons = new Map<RetentionItem, string[]>();
  const removal = new Map<RetentionItem, string>();
  const keepFor = (item: RetentionItem, reason: string) => {
    const list = reasons.get(item);
    if (list === undefined) reasons.set(item, [reason]);
    else if (!list.includes(reason)) list.push(reason);
  };

  const last = count(policy.keepLast);
  const empty = last === 0 && (Object.keys(POLICY_KEYS) as Rule[]).every((r) => count(policy[POLICY_KEYS[r]]) === 0);

  for (const type of TYPES) {
    const ofType = items.filter((i) => i.type === type).sort(newestFirst);
    const ok = ofType.filter((i) => i.status === 'ok');

    if (empty) {
      for (const item of ok) keepFor(item, 'no policy');
    } else {
      for (const item of ok.slice(0, last)) keepFor(item, 'last');
      for (const rule of Object.keys(BUCKETS) as Rule[]) {
        let remaining = count(policy[POLICY_KEYS[rule]]);
        let previous: string | undefined;
        for (const item of ok) {
          if (remaining === 0) break;
          const bucket = BUCKETS[rule](item.time);
          if (bucket === previous) continue; // an older backup of a bucket already served
          previous = bucket;
          keepFor(item, rule);
          remaining--;
        }
      }
    }

    const newestOk = ok[0];
    for (const item of ofType) {
      if (item.status === 'ok') continue;
      if (newestOk !== undefined && newestOk.time.getTime() > item.time.getTime()) {
        removal.set(item, item.status);
      } else {
        keepFor(item, `${item.status}, newer than every ok backup: may be a run in progress`);
      }
    }
  }

  // database states the point-in-time window keeps (pit-compact.ts windowStates): whatever the count
  // and calendar rules say, and with their chains (pinned below)
  if (window)
    for (const item of items) {
      if (item.type !== 'database' || item.status !== 'ok' || !window.ids.has(item.id)) continue;
      keepFor(item, window.reason);
      removal.delete(item);
    }

  // A full backup is a pair of pointers: deleting what it points to would break a kept backup.
  const byKey = new Map(items.map((i) => [`${i.type}:${i.id}`, i]));
  for (const full of items) {
    if (full.type !== 'full' || !reasons.has(full)) continue;
    for (const type of ['database', 'storage'] as const) {
      const id = full.components?.[type];
      const component = id ? byKey.get(`${type}:${id}`) : undefined;
      if (component === undefined) continue;
      keepFor(component, `component of full ${full.id}`);
      removal.delete(component);
    }
  }

  // An incremental storage backup needs its chain (manifests and archives), a database page delta the
  // states below it: a kept one pins them (catalog/chain.ts, catalog/page-chain.ts).
  for (const type of ['storage', 'database'] as const) {
    const chained = items.filter((i) => i.type === type);
    const { pinned } = pinnedByKept(
      chained,
      chained.filter((i) => reasons.has(i)).map((i) => i.id),
    );
    for (const [id, by] of pinned) {
      const target = byKey.get(`${type}:${id}`);
      if (target === undefined) continue;
      keepFor(target, `chain needed by ${type} ${by.length > 3 ? `${by.slice(0, 3).join(', ')} and ${by.length - 3} more` : by.join(', ')}`);
      removal.delete(target);
    }
  }

  const ordered = [...items].sort((a, b) => TYPES.indexOf(a.type) - TYPES.indexOf(b.type) || newestFirst(a, b));
  const plan: RetentionPlan = { keep: [], remove: [] };
  for (const item of ordered) {
    const why = reasons.get(item);
    if (why !== undefined) plan.keep.push({ item, reasons: why });
    else plan.remove.push({ item, reason: removal.get(item) ?? 'not kept by the policy' });
  }
  return plan;
}

/**
 * Newest first, by id: the order backups were made in (create never names a backup older than the
 * newest, see allocateId), which a wrong clock's `created_at` is not.
 */
function newestFirst(a: RetentionItem, b: RetentionItem): number {
  return compareIds(b.id, a.id);
}

function count(n: number | undefined): number {
  return n !== undefined && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

/** ISO 8601 week of the UTC date, as `YYYY-Www` (the week-numbering year may differ from the calendar year). */
function isoWeek(d: Date): string {
  const day = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const weekday = day.getUTCDay() || 7; // Monday 1 … Sunday 7
  day.setUTCDate(day.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const year = day.getUTCFullYear();
  const week = Math.ceil(((day.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}
