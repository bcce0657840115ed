/**
 * Promise: crash-safe. SIGKILL at a random moment of `create --type full` and of `restore` (a real
 * process, a real kill, no chance to clean up), then judge what is on disk the way the next run and
 * the operator see it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cli, counterState, fileHash, json, makeCounterDb, makeMedia, rmrf, rng, show, sleep, startCli, tempDir, tempFilesIn, treeDigest, trials,
} from '../helpers/faults.js';

const CREATE_TRIALS = trials(3, 20);
const RESTORE_TRIALS = trials(3, 20);

let cwd: string;
let flags: string[];
let backupDir: string;
let dbPath: string;
let storagePath: string;
const R = rng('kill');

beforeAll(() => {
  cwd = tempDir('vb-kill-');
  dbPath = path.join(cwd, 'app_data', 'app.db');
  storagePath = path.join(cwd, 'storage');
  backupDir = path.join(cwd, 'backups');
  makeCounterDb(dbPath, { journalMode: 'wal', fillerMb: 30, counter: 1000 });
  makeMedia(storagePath, { files: 300, bytes: 120 * 1024 * 1024 });
  flags = ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', backupDir];
});

afterAll(() => rmrf(cwd));

interface ListEntry {
  type: string;
  id: string;
  status: string;
  reason?: string;
  sidecar?: string | null;
}

async function list(): Promise<ListEntry[]> {
  const r = await cli(['list', '--json', ...flags], { cwd });
  expect(r.code, show(r)).toBe(0);
  const j = json(r);
  return j as ListEntry[];
}

function safeMax(db: string): number | undefined {
  try {
    return counterState(db).max;
  } catch {
    return undefined; // a copy aside cut by the kill
  }
}

describe('SIGKILL during create --type full', () => {
  it(`${CREATE_TRIALS} random kills: every backup list calls ok verifies, the next create works, rotate removes the leftovers`, async () => {
    // a first, complete backup: the one every kill must leave untouched; its time scales the kill points
    const base = await cli(['create', '--type', 'full', '--json', ...flags], { cwd });
    expect(base.code, show(base)).toBe(0);
    // the kill points scale with a run like the ones killed: the storage half of those is incremental
    // (a level 0 of the whole tree takes far longer, and kills timed by it mostly land after the end)
    const second = await cli(['create', '--type', 'full', '--json', ...flags], { cwd });
    expect(second.code, show(second)).toBe(0);
    const fullMs = second.ms;
    const seen = new Set<string>();
    const stats = { during: 0, okAfterKill: 0, incompleteAfterKill: 0, exitedBeforeKill: 0 };

    for (let t = 0; t < CREATE_TRIALS; t++) {
      const before = (await list()).filter((e) => e.status === 'ok').map((e) => `${e.type}:${e.id}`);
      const delay = R.int(30, Math.round(fullMs * 1.1));
      const run = startCli(['create', '--type', 'full', ...flags], { cwd });
      await sleep(delay);
      run.child.kill('SIGKILL');
      const r = await run.done;
      if (r.signal !== 'SIGKILL') stats.exitedBeforeKill++;
      else stats.during++;
      const ctx = `trial ${t}, SIGKILL after ${delay} ms (seed ${R.seed})`;

      // every backup list calls ok passes a full verify; the earlier one is untouched
      const entries = await list();
      for (const e of entries) {
        if (e.status === 'ok' && !seen.has(`${e.type}:${e.id}`)) {
          const v = await cli(['verify', e.sidecar ?? e.id, '--json', ...flags], { cwd });
          expect(v.code, `${ctx}: ${e.type} ${e.id} is listed ok but does not verify\n${show(v)}`).toBe(0);
          stats.okAfterKill++;
          seen.add(`${e.type}:${e.id}`);
        } else if (e.status === 'incomplete') stats.incompleteAfterKill++;
        expect(e.status, `${ctx}: ${e.type} ${e.id}: ${e.reason}`).not.toBe('damaged');
      }
      // every backup that was good before the kill is still listed ok
      const okNow = new Set(entries.filter((e) => e.status === 'ok').map((e) => `${e.type}:${e.id}`));
      expect(before.filter((k) => !okNow.has(k)), `${ctx}: earlier backups no longer ok`).toEqual([]);

      // the next run needs no manual clean-up: stale lock taken over, temp files removed
      const next = await cli(['create', '--type', 'full', '--json', ...flags], { cwd });
      expect(next.code, `${ctx}: the next create\n${show(next)}`).toBe(0);
      expect(tempFilesIn(backupDir), ctx).toEqual([]);
      expect(fs.existsSync(path.join(backupDir, '.vertex-backup.lock')), `${ctx}: lock left behind`).toBe(false);
      seen.add(`full:${json(next).id}`);

      // rotation removes whatever the kill left (incomplete data without a sidecar)
      const rot = await cli(['rotate', '--max-backups', '2', ...flags], { cwd });
      expect(rot.code, `${ctx}: rotate\n${show(rot)}`).toBe(0);
      const after = await list();
      expect(after.filter((e) => e.status !== 'ok').map((e) => `${e.type} ${e.id} ${e.status}`), ctx).toEqual([]);
      for (const e of after) if (e.type === 'full') expect(e.status, ctx).toBe('ok');
      // rotation only ever removes whole backups: the directory holds nothing unaccounted for
      for (const t2 of ['database', 'storage']) {
        for (const name of fs.readdirSync(path.join(backupDir, t2))) {
          expect(after.some((e) => e.type === t2 && name.includes(e.id)), `${ctx}: stray file ${t2}/${name}`).toBe(true);
        }
      }
    }
    console.log(`[faults] create kills: ${JSON.stringify(stats)}`);
    // the kills landed while the run was working, not only after it ended
    expect(stats.during).toBeGreaterThan(0);
  }, 900_000);
});

describe('SIGKILL during restore', () => {
  let pristineOld: string;
  let pristineDb: string;
  let newDigest: ReturnType<typeof treeDigest>;
  let oldDigest: ReturnType<typeof treeDigest>;
  let newMax: number;
  let oldMax: number;
  let backupId: string;

  const resetLive = () => {
    for (const n of fs.readdirSync(cwd)) {
      if (n.includes('pre-restore') || n.includes('.restore-') || n === 'storage') rmrf(path.join(cwd, n));
    }
    for (const n of fs.readdirSync(path.dirname(dbPath))) if (n !== 'app.db') rmrf(path.join(path.dirname(dbPath), n));
    fs.cpSync(pristineOld, storagePath, { recursive: true, verbatimSymlinks: true });
    fs.copyFileSync(pristineDb, dbPath);
  };

  beforeAll(async () => {
    // the backup holds the NEW state; the live paths are reset to the OLD state before every trial
    const r = await cli(['create', '--type', 'full', '--json', ...flags], { cwd });
    expect(r.code, show(r)).toBe(0);
    backupId = json(r).id;
    newDigest = treeDigest(storagePath);
    newMax = counterState(dbPath).max;

    pristineOld = path.join(cwd, 'pristine-old');
    fs.cpSync(storagePath, pristineOld, { recursive: true, verbatimSymlinks: true });
    // the old tree differs from the backup in content, names and shape
    fs.rmSync(path.join(pristineOld, 'd1'), { recursive: true });
    fs.writeFileSync(path.join(pristineOld, 'd0', 'e0', 'f0000.bin'), 'changed since the backup\n');
    fs.mkdirSync(path.join(pristineOld, 'only-in-old'));
    fs.writeFileSync(path.join(pristineOld, 'only-in-old', 'x.txt'), 'x\n');
    oldDigest = treeDigest(pristineOld);
    pristineDb = path.join(cwd, 'pristine-old.db');
    const py = `import sqlite3,sys\ndb=sqlite3.connect(sys.argv[1],isolation_level=None)\ndb.execute("INSERT INTO counter(n,t) SELECT max(n)+1, 1 FROM counter")\ndb.execute("PRAGMA wal_checkpoint(TRUNCATE)")\ndb.close()`;
    const { spawnSync } = await import('node:child_process');
    expect(spawnSync('python3', ['-c', py, dbPath]).status).toBe(0);
    oldMax = counterState(dbPath).max;
    fs.copyFileSync(dbPath, pristineDb);
    expect(oldMax).not.toBe(newMax);
    expect(oldDigest).not.toEqual(newDigest);
  });

  it(`${RESTORE_TRIALS} random kills: the storage path holds the old tree or the new one, the database passes integrity_check`, async () => {
    resetLive();
    const timing = await cli(['restore', backupId, '--yes', ...flags], { cwd });
    expect(timing.code, show(timing)).toBe(0);
    expect(treeDigest(storagePath)).toEqual(newDigest);
    const restoreMs = timing.ms;
    const outcomes = { old: 0, new: 0, betweenRenames: 0 };

    for (let t = 0; t < RESTORE_TRIALS; t++) {
      resetLive();
      const delay = R.int(20, Math.round(restoreMs * 1.05));
      const run = startCli(['restore', backupId, '--yes', ...flags], { cwd });
      await sleep(delay);
      run.child.kill('SIGKILL');
      await run.done;
      const ctx = `trial ${t}, SIGKILL after ${delay} of ~${restoreMs} ms (seed ${R.seed})`;

      // the database: a consistent database, holding the old data or the restored data
      const db = counterState(dbPath);
      expect(db.integrity, ctx).toBe('ok');
      expect([oldMax, newMax], ctx).toContain(db.max);
      expect(db.count, `${ctx}: counter has gaps`).toBe(db.max);

      // the storage path: the whole old tree or the whole new one, never a mix
      if (fs.existsSync(storagePath)) {
        const d = treeDigest(storagePath);
        const which = JSON.stringify(d) === JSON.stringify(oldDigest) ? 'old' : JSON.stringify(d) === JSON.stringify(newDigest) ? 'new' : 'mix';
        expect(which, `${ctx}: the storage path holds a mix of old and new`).not.toBe('mix');
        outcomes[which as 'old' | 'new']++;
        if (which === 'new') {
          // the old tree was kept aside, whole
          const kept = fs.readdirSync(cwd).filter((n) => n.startsWith(`storage.pre-restore-${backupId}`));
          expect(kept.length, ctx).toBe(1);
          expect(treeDigest(path.join(cwd, kept[0])), ctx).toEqual(oldDigest);
        }
      } else {
        // killed between the two renames: the swap marker names the old tree, whole, and the next restore puts it back first
        outcomes.betweenRenames++;
        const kept = fs.readdirSync(cwd).filter((n) => n.startsWith(`storage.pre-restore-${backupId}`));
        expect(kept.length, ctx).toBe(1);
        expect(treeDigest(path.join(cwd, kept[0])), ctx).toEqual(oldDigest);
        expect(fs.existsSync(path.join(cwd, '.storage.restore-swap.json')), `${ctx}: no swap marker`).toBe(true);
      }

      // the next restore needs no manual clean-up (stale lock, staging directory, interrupted swap)
      const again = await cli(['restore', backupId, '--yes', ...flags], { cwd });
      expect(again.code, `${ctx}: the next restore\n${show(again)}`).toBe(0);
      expect(treeDigest(storagePath), ctx).toEqual(newDigest);
      const after = counterState(dbPath);
      expect(after.integrity, ctx).toBe('ok');
      expect(after.max, ctx).toBe(newMax);
      expect(fs.readdirSync(cwd).filter((n) => n.includes('.restore-')), `${ctx}: staging left behind`).toEqual([]);
      // whatever the kill interrupted, the old tree still exists somewhere whole: never lost
      const keptOld = fs.readdirSync(cwd).filter((n) => n.startsWith('storage.pre-restore-')).some((n) => JSON.stringify(treeDigest(path.join(cwd, n))) === JSON.stringify(oldDigest));
      expect(keptOld, `${ctx}: the old tree is gone`).toBe(true);
      // and so is the old database
      const aside = fs.readdirSync(path.dirname(dbPath)).filter((n) => n.startsWith('app.db.pre-restore-') && !/-(wal|shm|journal)$/.test(n));
      expect(aside.some((n) => safeMax(path.join(path.dirname(dbPath), n)) === oldMax), `${ctx}: the old database is gone`).toBe(true);
    }
    console.log(`[faults] restore kills: ${JSON.stringify(outcomes)}`);
    expect(fileHash(pristineDb)).toBeTruthy();
  }, 900_000);
});
