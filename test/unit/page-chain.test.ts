/**
 * Issue 28, the pure parts of page chains: when a new level 0 starts, how a broken link damages every
 * delta above it, `--at` parsing, which state a moment picks, the gaps a drill reports, and rotation
 * keeping the states a kept delta needs.
 */
import { describe, expect, it } from 'vitest';
import { type DeltaSidecar, deltaChain, judgeDeltaChains, nextDeltaLevel } from '../../src/catalog/page-chain.js';
import { parseMoment, type RestorableState, stateAt, stateGaps } from '../../src/ops/pit.js';
import { planRetention, type RetentionItem } from '../../src/ops/retention.js';

const now = new Date('2026-12-05T06:00:00Z');
const sc = (id: string, level: number, extra: Partial<DeltaSidecar> = {}): DeltaSidecar => ({
  id,
  level,
  previous: level ? undefined : undefined,
  created_at: '2026-12-05T05:00:00Z',
  original_path: '/app/db',
  file_size: level ? 100 : 10_000,
  ...extra,
});

describe('nextDeltaLevel', () => {
  const chain = [sc('A', 0), sc('B', 1, { previous: 'A' }), sc('C', 2, { previous: 'B' })];
  const byId = (list: DeltaSidecar[]) => (id: string) => list.find((s) => s.id === id);
  const opts = { fullEveryMs: 86_400_000, maxShare: 0.5, now, dbPath: '/app/db' };

  it('continues a chain: previous level + 1', () => {
    expect(nextDeltaLevel(chain[2], byId(chain), opts)).toEqual({ level: 3 });
    expect(deltaChain('C', byId(chain))).toEqual(['A', 'B', 'C']);
  });

  it('starts a level 0: asked, none before, another file, old base, deltas over 50%, a missing link', () => {
    expect(nextDeltaLevel(chain[2], byId(chain), { ...opts, full: true }).level).toBe(0);
    expect(nextDeltaLevel(undefined, byId(chain), opts).reason).toMatch(/no earlier/);
    expect(nextDeltaLevel(chain[2], byId(chain), { ...opts, dbPath: '/other.db' }).reason).toMatch(/backs up \/app\/db/);
    expect(nextDeltaLevel(chain[2], byId(chain), { ...opts, now: new Date('2026-12-06T05:00:01Z') }).reason).toMatch(/older than --full-every/);
    const fat = [chain[0], sc('B', 1, { previous: 'A', file_size: 3000 }), sc('C', 2, { previous: 'B', file_size: 2001 })];
    expect(nextDeltaLevel(fat[2], byId(fat), opts).reason).toMatch(/more than 50% of its level 0/);
    expect(nextDeltaLevel(chain[2], byId([chain[0], chain[2]]), opts).reason).toMatch(/incomplete/);
    expect(deltaChain('C', byId([chain[0], chain[2]]))).toBeUndefined();
  });
});

describe('judgeDeltaChains', () => {
  it('a damaged or missing link damages every delta above it, not the ones below', () => {
    const e = (id: string, status: string, level: number, previous?: string) => ({
      type: 'database',
      id,
      status,
      sidecar: { level, previous, backup_path: level ? `db_backup_${id}.pgdelta` : `db_backup_${id}.db` },
    });
    const entries = [
      e('20261205_050000', 'ok', 0),
      e('20261205_050030', 'ok', 1, '20261205_050000'),
      e('20261205_050100', 'damaged', 2, '20261205_050030'),
      e('20261205_050130', 'ok', 3, '20261205_050100'),
      e('20261205_050200', 'ok', 4, '20261205_050130'),
      e('20261205_050230', 'ok', 1, '20261205_040000'),
    ];
    judgeDeltaChains(entries as never);
    expect(entries.map((x) => x.status)).toEqual(['ok', 'ok', 'damaged', 'damaged', 'damaged', 'damaged']);
    expect((entries[4] as { reason?: string }).reason).toMatch(/needs database backup 20261205_050130/);
    expect((entries[5] as { reason?: string }).reason).toMatch(/missing/);
  });
});

describe('restore --at', () => {
  it('reads UTC times, zoned ISO times and durations before now; refuses the rest (exit 2)', () => {
    expect(parseMoment('2026-12-05 05:59:30', now).toISOString()).toBe('2026-12-05T05:59:30.000Z');
    expect(parseMoment('2026-12-05 05:59', now).toISOString()).toBe('2026-12-05T05:59:00.000Z');
    expect(parseMoment('2026-12-05T07:59:30+02:00', now).toISOString()).toBe('2026-12-05T05:59:30.000Z');
    expect(parseMoment('-10m', now).toISOString()).toBe('2026-12-05T05:50:00.000Z');
    expect(parseMoment('-1h30m', now).toISOString()).toBe('2026-12-05T04:30:00.000Z');
    expect(() => parseMoment('yesterday', now)).toThrow(/cannot read "yesterday" as a moment/);
    expect(() => parseMoment('-10 parsecs', now)).toThrow(/duration/);
  });

  it('picks the newest state at or before the moment; nothing before the first', () => {
    const s = (id: string, at: string, level: number): RestorableState => ({ id, at: new Date(at), level });
    const states = [s('a', '2026-12-05T05:59:00Z', 0), s('b', '2026-12-05T05:59:30Z', 1), s('c', '2026-12-05T06:00:00Z', 2)];
    expect(stateAt(states, new Date('2026-12-05T05:59:30Z'))?.id).toBe('b');
    expect(stateAt(states, new Date('2026-12-05T05:59:59.999Z'))?.id).toBe('b');
    expect(stateAt(states, new Date('2026-12-05T07:00:00Z'))?.id).toBe('c');
    expect(stateAt(states, new Date('2026-12-05T05:58:59Z'))).toBeUndefined();
    expect(stateGaps(states, new Date('2026-12-05T06:00:00Z'))).toEqual({ states: 3, max_gap_ms: 30_000, p99_gap_ms: 30_000 });
  });
});

describe('rotation and page chains', () => {
  it('a kept delta keeps every state below it; an unkept chain goes', () => {
    const item = (id: string, hour: number, references?: string[]): RetentionItem => ({
      id,
      type: 'database',
      time: new Date(Date.UTC(2026, 11, 5, hour)),
      status: 'ok',
      references,
    });
    const items = [
      item('20261205_010000', 1, ['20261205_010000']),
      item('20261205_020000', 2, ['20261205_010000', '20261205_020000']),
      item('20261205_030000', 3, ['20261205_020000', '20261205_030000']),
      item('20261205_040000', 4, ['20261205_030000', '20261205_040000']),
    ];
    const plan = planRetention(items, { keepLast: 1 });
    expect(plan.keep.map((k) => k.item.id).sort()).toEqual(items.map((i) => i.id));
    expect(plan.keep.find((k) => k.item.id === '20261205_010000')?.reasons).toEqual(['chain needed by database 20261205_040000']);
  });
});
