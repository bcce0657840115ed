import { describe, expect, it } from 'vitest';
import { planRetention, type RetentionItem, type RetentionPolicy } from '../../src/ops/retention.js';

const HOUR = 3_600_000;

function id(d: Date): string {
  const s = d.toISOString();
  return `${s.slice(0, 4)}${s.slice(5, 7)}${s.slice(8, 10)}_${s.slice(11, 13)}${s.slice(14, 16)}${s.slice(17, 19)}`;
}

function item(time: string | Date, over: Partial<RetentionItem> = {}): RetentionItem {
  const t = typeof time === 'string' ? new Date(time) : time;
  return { id: id(t), type: 'database', time: t, status: 'ok', ...over };
}

/** One backup every 6 hours (00, 06, 12, 18 UTC) from 2023-01-01 to 2024-06-30 18:00: 18 months. */
function everySixHours(type: RetentionItem['type'] = 'database'): RetentionItem[] {
  const out: RetentionItem[] = [];
  for (let t = Date.UTC(2023, 0, 1); t <= Date.UTC(2024, 5, 30, 18); t += 6 * HOUR) out.push(item(new Date(t), { type }));
  return out;
}

const kept = (items: RetentionItem[], policy: RetentionPolicy) =>
  planRetention(items, policy)
    .keep.map((k) => k.item.id)
    .sort()
    .reverse();

const at18 = (...days: string[]) => days.map((d) => `${d}_180000`);

describe('planRetention over 18 months of backups every 6 hours', () => {
  const items = everySixHours();

  it.each<[string, RetentionPolicy, string[]]>([
    ['keepLast 2', { keepLast: 2 }, ['20240630_180000', '20240630_120000']],
    [
      'keepDaily 7: the newest of each of the last 7 days',
      { keepDaily: 7 },
      at18('20240630', '20240629', '20240628', '20240627', '20240626', '20240625', '20240624'),
    ],
    [
      'keepWeekly 4: the newest of each of the last 4 ISO weeks (Sundays)',
      { keepWeekly: 4 },
      at18('20240630', '20240623', '20240616', '20240609'),
    ],
    [
      'keepMonthly 12: the last backup of each of the last 12 months',
      { keepMonthly: 12 },
      at18(
        '20240630', '20240531', '20240430', '20240331', '20240229', '20240131',
        '20231231', '20231130', '20231031', '20230930', '20230831', '20230731',
      ),
    ],
    ['keepYearly 5: only two years hold backups', { keepYearly: 5 }, at18('20240630', '20231231')],
    [
      'keepLast 2 + keepDaily 3 + keepMonthly 3',
      { keepLast: 2, keepDaily: 3, keepMonthly: 3 },
      ['20240630_180000', '20240630_120000', ...at18('20240629', '20240628', '20240531', '20240430')],
    ],
  ])('%s', (_name, policy, want) => {
    expect(kept(items, policy)).toEqual([...want].sort().reverse());
  });

  it('combines keepLast 2, keepDaily 7, keepWeekly 4 and keepMonthly 12 with the reasons of each rule', () => {
    const plan = planRetention(items, { keepLast: 2, keepDaily: 7, keepWeekly: 4, keepMonthly: 12 });
    expect(plan.keep).toHaveLength(2 + 6 + 3 + 11);
    expect(plan.keep.length + plan.remove.length).toBe(items.length);
    const reasons = new Map(plan.keep.map((k) => [k.item.id, k.reasons]));
    expect(reasons.get('20240630_180000')).toEqual(['last', 'daily', 'weekly', 'monthly']);
    expect(reasons.get('20240630_120000')).toEqual(['last']);
    expect(reasons.get('20240624_180000')).toEqual(['daily']);
    expect(reasons.get('20240623_180000')).toEqual(['weekly']);
    expect(reasons.get('20240531_180000')).toEqual(['monthly']);
    expect(reasons.get('20230731_180000')).toEqual(['monthly']);
    expect(plan.remove.every((r) => r.reason === 'not kept by the policy')).toBe(true);
    // the oldest monthly keeps July 2023; June 2023 is gone entirely
    expect(plan.keep.some((k) => k.item.id.startsWith('202306'))).toBe(false);
  });

  it('returns each item exactly once, newest first within a type', () => {
    const plan = planRetention(items, { keepDaily: 7 });
    const all = [...plan.keep.map((k) => k.item), ...plan.remove.map((r) => r.item)];
    expect(new Set(all).size).toBe(items.length);
    const keptTimes = plan.keep.map((k) => k.item.time.getTime());
    expect(keptTimes).toEqual([...keptTimes].sort((a, b) => b - a));
  });
});

describe('planRetention: calendar edges', () => {
  it('buckets days by UTC, not local time', () => {
    const items = [item('2024-03-10T23:30:00Z'), item('2024-03-10T22:00:00Z'), item('2024-03-11T00:30:00Z')];
    expect(kept(items, { keepDaily: 2 })).toEqual(['20240311_003000', '20240310_233000']);
  });

  it('uses ISO weeks across the new year (2021-01-03 is still in 2020-W53)', () => {
    const items = [
      item('2020-12-31T12:00:00Z'),
      item('2021-01-01T12:00:00Z'),
      item('2021-01-03T12:00:00Z'),
      item('2021-01-04T12:00:00Z'),
    ];
    expect(kept(items, { keepWeekly: 2 })).toEqual(['20210104_120000', '20210103_120000']);
    expect(kept(items, { keepWeekly: 3 })).toEqual(['20210104_120000', '20210103_120000']);
    // a Monday 2024-12-30 belongs to 2025-W01, together with 2025-01-02
    const w = [item('2024-12-29T12:00:00Z'), item('2024-12-30T12:00:00Z'), item('2025-01-02T12:00:00Z')];
    expect(kept(w, { keepWeekly: 5 })).toEqual(['20250102_120000', '20241229_120000']);
  });

  it('counts only days that have a backup (irregular schedule with gaps)', () => {
    const items = [
      item('2024-01-01T01:00:00Z'),
      item('2024-01-01T05:00:00Z'),
      item('2024-01-05T05:00:00Z'),
      item('2024-01-09T03:00:00Z'),
      item('2024-01-09T09:00:00Z'),
      item('2024-01-10T00:00:01Z'),
    ];
    expect(kept(items, { keepDaily: 3 })).toEqual(['20240110_000001', '20240109_090000', '20240105_050000']);
    expect(kept(items, { keepDaily: 10 })).toEqual([
      '20240110_000001',
      '20240109_090000',
      '20240105_050000',
      '20240101_050000',
    ]);
  });

  it('breaks ties in the same second by the id suffix (_2 is the later backup, _10 later than _2)', () => {
    const t = new Date('2024-05-01T12:00:00Z');
    const items = [
      item(t, { id: '20240501_120000' }),
      item(t, { id: '20240501_120000_2' }),
      item(t, { id: '20240501_120000_10' }),
    ];
    expect(kept(items, { keepLast: 1 })).toEqual(['20240501_120000_10']);
    expect(kept([...items].reverse(), { keepDaily: 1 })).toEqual(['20240501_120000_10']);
    expect(kept(items, { keepLast: 2 }).sort()).toEqual(['20240501_120000_10', '20240501_120000_2']);
  });

  it('ignores input order', () => {
    const items = everySixHours().slice(-200);
    const shuffled = [...items].sort((a, b) => (a.id.split('').reverse().join('') < b.id.split('').reverse().join('') ? -1 : 1));
    const policy = { keepLast: 3, keepDaily: 5, keepWeekly: 2 };
    expect(kept(shuffled, policy)).toEqual(kept(items, policy));
  });
});

describe('planRetention: per type', () => {
  it('applies the policy to each type independently', () => {
    const items = [...everySixHours('database').slice(-10), ...everySixHours('storage').slice(-3), ...everySixHours('full').slice(-1)];
    const plan = planRetention(items, { keepLast: 2 });
    const byType = (t: string) => plan.keep.filter((k) => k.item.type === t).map((k) => k.item.id);
    expect(byType('database')).toEqual(['20240630_180000', '20240630_120000']);
    expect(byType('storage')).toEqual(['20240630_180000', '20240630_120000']);
    expect(byType('full')).toEqual(['20240630_180000']);
    expect(plan.remove).toHaveLength(8 + 1);
  });
});

describe('planRetention: components of kept full backups', () => {
  const db = (t: string, over: Partial<RetentionItem> = {}) => item(t, { type: 'database', ...over });
  const st = (t: string, over: Partial<RetentionItem> = {}) => item(t, { type: 'storage', ...over });
  const full = (t: string, database: string | null, storage: string | null, over: Partial<RetentionItem> = {}) =>
    item(t, { type: 'full', components: { database, storage }, ...over });

  it('keeps the database and storage backups a kept full backup names, even when their own rule drops them', () => {
    const items = [
      db('2024-01-01T00:00:00Z'),
      st('2024-01-01T00:00:05Z'),
      full('2024-01-01T00:00:10Z', '20240101_000000', '20240101_000005'),
      db('2024-02-01T00:00:00Z'),
      db('2024-03-01T00:00:00Z'),
      st('2024-03-01T00:00:00Z'),
    ];
    const plan = planRetention(items, { keepLast: 1 });
    const keep = new Map(plan.keep.map((k) => [`${k.item.type}:${k.item.id}`, k.reasons]));
    expect(keep.get('full:20240101_000010')).toEqual(['last']);
    expect(keep.get('database:20240101_000000')).toEqual(['component of full 20240101_000010']);
    expect(keep.get('storage:20240101_000005')).toEqual(['component of full 20240101_000010']);
    expect(keep.get('database:20240301_000000')).toEqual(['last']);
    expect(plan.remove.map((r) => `${r.item.type}:${r.item.id}`)).toEqual(['database:20240201_000000']);
  });

  it('adds the component reason to a backup its own rule keeps too', () => {
    const items = [db('2024-01-01T00:00:00Z'), full('2024-01-01T00:00:10Z', '20240101_000000', null)];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.keep.find((k) => k.item.type === 'database')?.reasons).toEqual(['last', 'component of full 20240101_000010']);
  });

  it('lets the components of a removed full backup go by their own rule', () => {
    const items = [
      db('2024-01-01T00:00:00Z'),
      full('2024-01-01T00:00:10Z', '20240101_000000', null),
      db('2024-02-01T00:00:00Z'),
      full('2024-02-01T00:00:10Z', '20240201_000000', null),
    ];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.remove.map((r) => `${r.item.type}:${r.item.id}`).sort()).toEqual(['database:20240101_000000', 'full:20240101_000010']);
  });

  it('protects a component that is damaged or incomplete, and ignores ids that do not exist', () => {
    const items = [
      db('2024-01-01T00:00:00Z', { status: 'damaged' }),
      full('2024-01-01T00:00:10Z', '20240101_000000', '20991231_000000'),
      db('2024-03-01T00:00:00Z'),
    ];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.remove).toEqual([]);
    expect(plan.keep.find((k) => k.item.id === '20240101_000000')?.reasons).toEqual(['component of full 20240101_000010']);
  });

  it('never removes a component of a kept full backup (randomised catalogs and policies)', () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const statuses: RetentionItem['status'][] = ['ok', 'ok', 'ok', 'ok', 'incomplete', 'damaged'];
    for (let round = 0; round < 300; round++) {
      const items: RetentionItem[] = [];
      let t = Date.UTC(2023, 0, 1);
      const dbs: string[] = [];
      const sts: string[] = [];
      for (let i = 0; i < 40; i++) {
        t += Math.floor(rand() * 5 * 24) * HOUR + 1000;
        const d = new Date(t);
        const kind = rand();
        if (kind < 0.35) {
          const it = item(d, { type: 'database', status: statuses[Math.floor(rand() * statuses.length)] });
          items.push(it);
          dbs.push(it.id);
        } else if (kind < 0.6) {
          const it = item(d, { type: 'storage', status: statuses[Math.floor(rand() * statuses.length)] });
          items.push(it);
          sts.push(it.id);
        } else {
          const pick = (list: string[]) => (list.length && rand() < 0.9 ? list[Math.floor(rand() * list.length)]! : null);
          items.push(item(d, { type: 'full', status: statuses[Math.floor(rand() * statuses.length)], components: { database: pick(dbs), storage: pick(sts) } }));
        }
      }
      const n = () => (rand() < 0.4 ? 0 : Math.floor(rand() * 6));
      const policy: RetentionPolicy = { keepLast: n(), keepDaily: n(), keepWeekly: n(), keepMonthly: n(), keepYearly: n() };
      const plan = planRetention(items, policy);

      const removed = new Set(plan.remove.map((r) => `${r.item.type}:${r.item.id}`));
      for (const k of plan.keep) {
        if (k.item.type !== 'full') continue;
        const c = k.item.components ?? {};
        if (c.database) expect(removed.has(`database:${c.database}`), `round ${round}: component of kept full ${k.item.id}`).toBe(false);
        if (c.storage) expect(removed.has(`storage:${c.storage}`), `round ${round}: component of kept full ${k.item.id}`).toBe(false);
      }
      expect(plan.keep.length + plan.remove.length).toBe(items.length);
      // a policy never removes the newest ok backup of a type
      for (const type of ['full', 'database', 'storage'] as const) {
        const ok = items.filter((i) => i.type === type && i.status === 'ok').sort((a, b) => b.time.getTime() - a.time.getTime());
        if (ok[0]) expect(removed.has(`${type}:${ok[0].id}`)).toBe(false);
      }
    }
  });
});

describe('planRetention: incomplete and damaged backups', () => {
  it('removes leftovers older than the newest ok backup of the type, keeps newer ones', () => {
    const items = [
      item('2024-01-01T00:00:00Z', { status: 'incomplete' }),
      item('2024-01-02T00:00:00Z', { status: 'damaged' }),
      item('2024-01-03T00:00:00Z'),
      item('2024-01-04T00:00:00Z', { status: 'incomplete' }),
      item('2024-01-05T00:00:00Z', { status: 'damaged' }),
    ];
    const plan = planRetention(items, { keepLast: 5 });
    expect(plan.remove.map((r) => [r.item.id, r.reason])).toEqual([
      ['20240102_000000', 'damaged'],
      ['20240101_000000', 'incomplete'],
    ]);
    expect(plan.keep.map((k) => k.item.id)).toEqual(['20240105_000000', '20240104_000000', '20240103_000000']);
    expect(plan.keep[1]?.reasons[0]).toMatch(/^incomplete, newer than every ok backup/);
  });

  it('keeps every leftover of a type that has no ok backup (it may be the first run, in progress)', () => {
    const items = [item('2024-01-01T00:00:00Z', { status: 'incomplete' }), item('2024-01-02T00:00:00Z', { type: 'storage' })];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.remove).toEqual([]);
  });

  it('does not let leftovers take the place of ok backups in keepLast', () => {
    const items = [
      item('2024-01-01T00:00:00Z'),
      item('2024-01-02T00:00:00Z'),
      item('2024-01-03T00:00:00Z', { status: 'incomplete' }),
    ];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.keep.map((k) => k.item.id)).toEqual(['20240103_000000', '20240102_000000']);
    expect(plan.remove.map((r) => r.item.id)).toEqual(['20240101_000000']);
  });
});

describe('planRetention: empty policy', () => {
  it.each<[string, RetentionPolicy]>([
    ['{}', {}],
    ['all zero', { keepLast: 0, keepDaily: 0, keepWeekly: 0, keepMonthly: 0, keepYearly: 0 }],
    ['negative and NaN', { keepLast: -1, keepDaily: Number.NaN }],
  ])('keeps every ok backup: %s', (_name, policy) => {
    const items = [...everySixHours().slice(-20), ...everySixHours('full').slice(-3)];
    const plan = planRetention(items, policy);
    expect(plan.remove).toEqual([]);
    expect(plan.keep).toHaveLength(23);
    expect(plan.keep[0]?.reasons).toEqual(['no policy']);
  });

  it('still clears leftovers older than an ok backup', () => {
    const items = [item('2024-01-01T00:00:00Z', { status: 'incomplete' }), item('2024-01-02T00:00:00Z')];
    const plan = planRetention(items, {});
    expect(plan.remove.map((r) => r.reason)).toEqual(['incomplete']);
  });
});
