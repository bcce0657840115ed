/**
 * Issue 3: `rotate` against the built binary and real backup directories: --max-backups over a mix of
 * real full and database/storage runs (components of kept full backups stay, everything left verifies),
 * --dry-run, incomplete leftovers, and GFS over 18 months of synthetic backups checked against an
 * independent computation (not planRetention).
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, sh } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, tempDir } from '../helpers/fixtures.js';

type BType = 'full' | 'database' | 'storage';

interface ListItem {
  type: BType;
  id: string;
  created_at: string;
  status: string;
  database?: string | null;
  storage?: string | null;
}

interface RotateJson {
  dry_run: boolean;
  kept: { type: BType; id: string; reasons: string[] }[];
  removed: { type: BType; id: string; reason: string; files: string[]; disk_bytes: number }[];
  freed_bytes: number;
}

const PREFIX: Record<BType, string> = { full: 'full_backup_', database: 'db_backup_', storage: 'storage_backup_' };
const key = (t: string, id: string) => `${t}:${id}`;
const keys = (xs: { type: string; id: string }[]) => xs.map((x) => key(x.type, x.id)).sort();

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) rmrf(d);
});

/** Every file under the backup directory (relative), without the log and lock. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel))) {
      const r = rel ? `${rel}/${n}` : n;
      if (fs.statSync(path.join(dir, r)).isDirectory()) walk(r);
      else if (r !== 'backup.log' && !/\.lock(\.db)?$/.test(r)) out.push(r);
    }
  };
  walk('');
  return out.sort();
}

/** The backups on disk, by file names only (a backup is there when its sidecar is). */
function onDisk(dir: string): string[] {
  const out: string[] = [];
  for (const t of ['full', 'database', 'storage'] as BType[]) {
    const d = path.join(dir, t);
    if (!fs.existsSync(d)) continue;
    for (const n of fs.readdirSync(d)) if (n.startsWith(PREFIX[t]) && n.endsWith('.json')) out.push(key(t, n.slice(PREFIX[t].length, -5)));
  }
  return out.sort();
}

/** Files of one backup (data and sidecar), found by name. */
const filesOf = (dir: string, t: BType, id: string) =>
  fs.existsSync(path.join(dir, t)) ? fs.readdirSync(path.join(dir, t)).filter((n) => n.startsWith(`${PREFIX[t]}${id}.`)) : [];

// ---------------------------------------------------------------------------------------------------

describe('rotate --max-backups 2 after a mix of real full, database and storage runs', () => {
  let app: AppFixture;
  let before: ListItem[];
  let expectedKeep: string[];
  let expectedRemove: string[];
  const runs: BType[] = ['full', 'database', 'full', 'database', 'storage', 'full', 'database', 'database', 'storage', 'storage'];

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 50, minimalStorage: true });
    cleanup.push(app.cwd);
    for (const t of runs) {
      // level 0 storage backups: pins of incremental chains are covered in incremental.test.ts
      const r = await run(['create', '--type', t, ...(t === 'database' ? [] : ['--full']), '--json', ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
    }
    const l = await run(['list', '--json', ...app.flags], { cwd: app.cwd });
    expect(l.code, describeRun(l)).toBe(0);
    before = parseJsonStdout<ListItem[]>(l);
    // the independent expectation: per type the 2 newest by creation time, plus both components of
    // each kept full backup
    const keep = new Set<string>();
    for (const t of ['full', 'database', 'storage'] as BType[]) {
      before
        .filter((b) => b.type === t && b.status === 'ok')
        .sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
        .slice(0, 2)
        .forEach((b) => keep.add(key(t, b.id)));
    }
    for (const f of before.filter((b) => b.type === 'full' && keep.has(key('full', b.id)))) {
      keep.add(key('database', f.database!));
      keep.add(key('storage', f.storage!));
    }
    expectedKeep = [...keep].sort();
    expectedRemove = before.map((b) => key(b.type, b.id)).filter((k) => !keep.has(k)).sort();
  });

  it('the runs produced what the scenario needs (3 full, 7 database, 6 storage backups, all ok)', () => {
    const n = (t: BType) => before.filter((b) => b.type === t && b.status === 'ok').length;
    expect([n('full'), n('database'), n('storage')]).toEqual([3, 7, 6]);
    // the scenario is only meaningful if components of kept full backups fall outside the 2 newest
    expect(expectedKeep.length).toBeGreaterThan(6);
  });

  it('--dry-run --json lists what would go and removes nothing', async () => {
    const files = listing(app.backupDir);
    const r = await run(['rotate', '--max-backups', '2', '--dry-run', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RotateJson>(r);
    expect(j.dry_run).toBe(true);
    expect(keys(j.removed)).toEqual(expectedRemove);
    expect(keys(j.kept)).toEqual(expectedKeep);
    for (const x of j.removed) expect(x.files.length).toBeGreaterThan(0);
    expect(listing(app.backupDir)).toEqual(files);
  });

  it('--dry-run (human) names the backups it would remove and says nothing was removed', async () => {
    const files = listing(app.backupDir);
    const r = await run(['rotate', '--max-backups', '2', '--dry-run', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    for (const k of expectedRemove) expect(r.stdout).toContain(k.split(':')[1]);
    expect(r.stdout).toMatch(/dry run/);
    expect(listing(app.backupDir)).toEqual(files);
  });

  it('rotate keeps exactly the 2 newest of each type plus the components of the kept full backups', async () => {
    const r = await run(['rotate', '--max-backups', '2', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RotateJson>(r);
    expect(j.dry_run).toBe(false);
    expect(keys(j.removed)).toEqual(expectedRemove);
    expect(onDisk(app.backupDir)).toEqual(expectedKeep);
    // no data file of a removed backup is left behind
    for (const k of expectedRemove) {
      const [t, id] = k.split(':') as [BType, string];
      expect(filesOf(app.backupDir, t, id), k).toEqual([]);
    }
  });

  it('everything left verifies (verify --all exits 0) and list shows only ok backups', async () => {
    const v = await run(['verify', '--all', ...app.flags], { cwd: app.cwd });
    expect(v.code, describeRun(v)).toBe(0);
    const l = parseJsonStdout<ListItem[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd }));
    expect(keys(l)).toEqual(expectedKeep);
    expect(l.every((b) => b.status === 'ok'), JSON.stringify(l, null, 1)).toBe(true);
  });

  it('a second rotate with the same policy removes nothing', async () => {
    const files = listing(app.backupDir);
    const r = await run(['rotate', '--max-backups', '2', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(parseJsonStdout<RotateJson>(r).removed).toEqual([]);
    expect(listing(app.backupDir)).toEqual(files);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('incomplete leftovers', () => {
  let app: AppFixture;
  let good: string[];
  const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  let oldId: string;
  let newId: string;

  beforeAll(async () => {
    app = makeApp({ journalMode: 'wal', events: 50, minimalStorage: true });
    cleanup.push(app.cwd);
    for (let i = 0; i < 2; i++) {
      const r = await run(['create', '--type', 'full', ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
    }
    good = onDisk(app.backupDir);
    oldId = stamp(new Date(Date.now() - 3 * 86_400_000));
    newId = stamp(new Date(Date.now() + 3_600_000)); // newer than every good backup: may be a run in progress
    // data files of interrupted runs: no sidecar
    fs.writeFileSync(path.join(app.backupDir, 'database', `db_backup_${oldId}.db`), 'half a database');
    fs.writeFileSync(path.join(app.backupDir, 'storage', `storage_backup_${oldId}.tar.gz`), 'half an archive');
    fs.writeFileSync(path.join(app.backupDir, 'storage', `storage_backup_${oldId}.tar.gz.part001`), 'a part');
    fs.writeFileSync(path.join(app.backupDir, 'database', `db_backup_${newId}.db`), 'being written');
  });

  it('list shows them as incomplete', async () => {
    const l = parseJsonStdout<ListItem[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd }));
    const st = (t: string, id: string) => l.find((b) => b.type === t && b.id === id)?.status;
    expect(st('database', oldId)).toBe('incomplete');
    expect(st('storage', oldId)).toBe('incomplete');
    expect(st('database', newId)).toBe('incomplete');
  });

  it('rotate removes those older than the newest good backup, keeps the newer one and every good backup', async () => {
    const r = await run(['rotate', '--max-backups', '5', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const j = parseJsonStdout<RotateJson>(r);
    expect(keys(j.removed)).toEqual([key('database', oldId), key('storage', oldId)].sort());
    expect(filesOf(app.backupDir, 'database', oldId)).toEqual([]);
    expect(filesOf(app.backupDir, 'storage', oldId)).toEqual([]);
    expect(filesOf(app.backupDir, 'database', newId)).toEqual([`db_backup_${newId}.db`]);
    expect(onDisk(app.backupDir)).toEqual(good);
  });
});

// ---------------------------------------------------------------------------------------------------

/**
 * 18 months of synthetic backups written directly: full backups nightly at 02:00 (each with its database
 * and storage component of the same id), some nights missing, some days with a second full backup in
 * the afternoon, and database-only backups three times a day over the last 12 days.
 */
describe('GFS: rotate --keep-daily 7 --keep-weekly 4 --keep-monthly 12 over 18 months', () => {
  const dir = tempDir('vb-e2e-gfs-');
  cleanup.push(dir);
  const backupDir = path.join(dir, 'backups');
  const flags = ['--backup-dir', backupDir, '--db-path', path.join(dir, 'app.db'), '--storage-path', path.join(dir, 'storage')];
  interface Synth {
    type: BType;
    id: string;
    time: Date;
    database?: string;
    storage?: string;
  }
  const all: Synth[] = [];
  let result: RotateJson;
  let expected: Set<string>;

  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const idOf = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);

  beforeAll(async () => {
    // one tiny real database and one tiny real archive, copied under every name
    const work = path.join(dir, 'work');
    fs.mkdirSync(path.join(work, 'storage'), { recursive: true });
    fs.writeFileSync(path.join(work, 'storage', 'a.txt'), 'a\n');
    sh('tar', ['-czf', path.join(work, 'a.tar.gz'), '-C', work, 'storage']);
    sh('sqlite3', [path.join(work, 'a.db'), 'CREATE TABLE t(x); INSERT INTO t VALUES(1);']);
    const dbBytes = fs.readFileSync(path.join(work, 'a.db'));
    const tarBytes = fs.readFileSync(path.join(work, 'a.tar.gz'));
    for (const t of ['full', 'database', 'storage']) fs.mkdirSync(path.join(backupDir, t), { recursive: true });

    const common = (type: BType, id: string, time: Date) => ({
      format: 1,
      tool: { name: 'vertex-backup', version: '0.1.0' },
      id,
      type,
      timestamp: id.slice(0, 15),
      created_at: time.toISOString(),
      duration_ms: 10,
    });
    const writeDb = (id: string, time: Date) => {
      const name = `db_backup_${id}.db`;
      fs.writeFileSync(path.join(backupDir, 'database', name), dbBytes);
      const sc = { ...common('database', id, time), original_path: '/srv/app.db', backup_path: name, file_size: dbBytes.length, checksum: sha(dbBytes), compression: 'none', sqlite: { page_size: 4096, page_count: dbBytes.length / 4096, journal_mode: 'delete', integrity: 'ok', tables: 1 } };
      fs.writeFileSync(path.join(backupDir, 'database', `db_backup_${id}.json`), JSON.stringify(sc));
      all.push({ type: 'database', id, time });
    };
    const writeStorage = (id: string, time: Date) => {
      const name = `storage_backup_${id}.tar.gz`;
      fs.writeFileSync(path.join(backupDir, 'storage', name), tarBytes);
      const sc = { ...common('storage', id, time), original_path: '/srv/storage', backup_path: name, file_size: tarBytes.length, checksum: sha(tarBytes), compression: 'gzip', file_count: 1, entry_count: 2, content_bytes: 2 };
      fs.writeFileSync(path.join(backupDir, 'storage', `storage_backup_${id}.json`), JSON.stringify(sc));
      all.push({ type: 'storage', id, time });
    };
    const writeFull = (time: Date) => {
      const id = idOf(time);
      writeDb(id, new Date(time.getTime() + 1000));
      writeStorage(id, new Date(time.getTime() + 2000));
      const sc = { ...common('full', id, time), database: id, storage: id, status: 'ok', file_size: dbBytes.length + tarBytes.length };
      fs.writeFileSync(path.join(backupDir, 'full', `full_backup_${id}.json`), JSON.stringify(sc));
      all.push({ type: 'full', id, time, database: id, storage: id });
    };

    const first = Date.UTC(2023, 0, 1); // Sunday 2023-01-01 .. Saturday 2024-06-29
    const last = Date.UTC(2024, 5, 29);
    let n = 0;
    for (let day = first; day <= last; day += 86_400_000, n++) {
      const isLast = day === last;
      if (n % 11 === 5 && !isLast) continue; // a missed night now and then
      writeFull(new Date(day + 2 * 3_600_000));
      if (n % 5 === 2 || isLast) writeFull(new Date(day + 14 * 3_600_000 + 30 * 60_000)); // a second one that day
      if (last - day < 12 * 86_400_000) for (const h of [8, 13, 20]) writeDb(idOf(new Date(day + h * 3_600_000 + 17_000)), new Date(day + h * 3_600_000 + 17_000));
    }

    // independent expectation: per type, walk ok backups newest first; a rule keeps the first backup of
    // each new bucket until it has N buckets; rules add up; components of kept full backups stay
    const dayKey = (d: Date) => `${d.getUTCFullYear()}-${d.getUTCMonth() + 1}-${d.getUTCDate()}`;
    // ISO weeks start on Monday; 1970-01-01 was a Thursday, so day 0 belongs to the week starting day -3
    const weekKey = (d: Date) => String(Math.floor((Math.floor(d.getTime() / 86_400_000) + 3) / 7));
    const monthKey = (d: Date) => `${d.getUTCFullYear()}-${d.getUTCMonth() + 1}`;
    expected = new Set();
    for (const t of ['full', 'database', 'storage'] as BType[]) {
      const ofType = all.filter((b) => b.type === t).sort((a, b) => b.time.getTime() - a.time.getTime());
      for (const [bucket, count] of [
        [dayKey, 7],
        [weekKey, 4],
        [monthKey, 12],
      ] as [(d: Date) => string, number][]) {
        const seen = new Set<string>();
        for (const b of ofType) {
          const k = bucket(b.time);
          if (seen.has(k)) continue;
          if (seen.size === count) break;
          seen.add(k);
          expected.add(key(t, b.id));
        }
      }
    }
    for (const f of all.filter((b) => b.type === 'full' && expected.has(key('full', b.id)))) {
      expected.add(key('database', f.database!));
      expected.add(key('storage', f.storage!));
    }

    const r = await run(['rotate', '--keep-daily', '7', '--keep-weekly', '4', '--keep-monthly', '12', '--json', ...flags], { cwd: dir });
    expect(r.code, describeRun(r)).toBe(0);
    result = parseJsonStdout<RotateJson>(r);
  });

  it('the synthetic catalog is what the scenario needs', () => {
    expect(all.filter((b) => b.type === 'full').length).toBeGreaterThan(550);
    expect(all.filter((b) => b.type === 'database').length).toBeGreaterThan(580);
  });

  it('the kept full backups are exactly the independently computed set (about 20: daily 7, weekly 4, monthly 12 overlapping)', () => {
    const kept = keys(result.kept.filter((k) => k.type === 'full'));
    const exp = [...expected].filter((k) => k.startsWith('full:')).sort();
    expect(kept).toEqual(exp);
    expect(exp.length).toBeGreaterThanOrEqual(18);
    expect(exp.length).toBeLessThanOrEqual(23);
    // the last day has two full backups: the daily rule keeps the afternoon one, not the 02:00 one
    expect(kept).toContain('full:20240629_143000');
    expect(kept).not.toContain('full:20240629_020000');
  });

  it('the kept database and storage backups are exactly the independently computed set (GFS per type + components)', () => {
    for (const t of ['database', 'storage']) {
      expect(keys(result.kept.filter((k) => k.type === t)), t).toEqual([...expected].filter((k) => k.startsWith(`${t}:`)).sort());
    }
  });

  it('what is on disk afterwards is the kept set; everything else was removed', () => {
    expect(onDisk(backupDir)).toEqual([...expected].sort());
    expect(result.removed.length).toBe(all.length - expected.size);
    const artifacts = fs.readdirSync(path.join(backupDir, 'database')).filter((n) => n.endsWith('.db')).length;
    expect(artifacts).toBe([...expected].filter((k) => k.startsWith('database:')).length);
  });

  it('everything left verifies (verify --all exits 0)', async () => {
    const v = await run(['verify', '--all', ...flags], { cwd: dir });
    expect(v.code, describeRun(v)).toBe(0);
  });
});
