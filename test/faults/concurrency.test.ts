/**
 * Promise: one run at a time per backup directory. Real processes racing for the same kernel lock: a
 * live holder gives exit 4 naming it (or a wait with --wait); a holder file left by a killed process
 * (no kernel lock behind it: "stale") never blocks and never lets two processes in at once; rotate
 * never removes a backup being written.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, cli, json, makeCounterDb, makeMedia, rmrf, rng, show, startCli, tempDir, trials, waitFor } from '../helpers/faults.js';

const RACE_TRIALS = trials(3, 12);
const RACERS = 5;
const LOCK_TRIALS = trials(4, 15);
const LOCK_RACERS = 14;
const R = rng('concurrency');

let cwd: string;
let flags: string[];
let backupDir: string;
const lockFile = () => path.join(backupDir, '.vertex-backup.lock');

beforeAll(() => {
  cwd = tempDir('vb-conc-');
  makeCounterDb(path.join(cwd, 'app.db'), { journalMode: 'wal', fillerMb: 20, counter: 10 });
  makeMedia(path.join(cwd, 'storage'), { files: 200, bytes: 80 * 1024 * 1024 });
  backupDir = path.join(cwd, 'backups');
  flags = ['--db-path', path.join(cwd, 'app.db'), '--storage-path', path.join(cwd, 'storage'), '--backup-dir', backupDir];
});

afterAll(() => rmrf(cwd));

function deadPid(): number {
  return Number(spawnSync('sh', ['-c', 'echo $$']).stdout.toString().trim());
}

describe('two runs at once', () => {
  it('a second create exits 4 naming the holder; with --wait it waits and then succeeds', async () => {
    const first = startCli(['create', '--type', 'full', '--json', ...flags], { cwd });
    await waitFor(() => fs.existsSync(lockFile()), 20_000, 'the first run to take the lock', 2);
    const second = await cli(['create', '--type', 'full', ...flags], { cwd });
    expect(second.code, show(second)).toBe(4);
    expect(second.stderr).toContain(`pid ${first.child.pid}`);
    expect(second.stderr).toMatch(/create --type full/);
    // a waiting run starts after the holder ends and makes its own backup
    const waiting = startCli(['create', '--type', 'full', '--wait', '120', '--json', ...flags], { cwd });
    const r1 = await first.done;
    const r2 = await waiting.done;
    expect(r1.code, show(r1)).toBe(0);
    expect(r2.code, show(r2)).toBe(0);
    expect(json(r2).id).not.toBe(json(r1).id);
    const v = await cli(['verify', '--all', ...flags], { cwd });
    expect(v.code, show(v)).toBe(0);
  });

  it(`${RACE_TRIALS} races of ${RACERS} creates started together (a stale holder file planted in half of them): exactly one wins`, async () => {
    for (let t = 0; t < RACE_TRIALS; t++) {
      const stale = t % 2 === 1;
      if (stale) {
        fs.mkdirSync(backupDir, { recursive: true });
        fs.writeFileSync(lockFile(), JSON.stringify({ pid: deadPid(), hostname: os.hostname(), started_at: new Date(Date.now() - 60_000).toISOString(), command: 'create --type full' }));
      }
      const before = fs.existsSync(path.join(backupDir, 'full')) ? fs.readdirSync(path.join(backupDir, 'full')).length : 0;
      const runs = Array.from({ length: RACERS }, () => startCli(['create', '--type', 'full', '--json', ...flags], { cwd }));
      const results = await Promise.all(runs.map((r) => r.done));
      const ctx = `trial ${t}${stale ? ' (stale lock planted)' : ''}: ${results.map((r) => r.code).join(',')}`;
      const winners = results.filter((r) => r.code === 0);
      const locked = results.filter((r) => r.code === 4);
      // a loser may also arrive after the winner finished and run alone: then it is a second winner whose run did not overlap
      expect(winners.length + locked.length, `${ctx}\n${results.map(show).join('\n')}`).toBe(RACERS);
      expect(winners.length, ctx).toBeGreaterThanOrEqual(1);
      for (const l of locked) expect(l.stderr, ctx).toMatch(/holds the lock.*pid \d+/);
      // two holders at once would pick the same id (it is allocated under the lock) and clobber each other
      const ids = winners.map((w) => json(w).id as string);
      expect(new Set(ids).size, ctx).toBe(winners.length);
      const after = fs.readdirSync(path.join(backupDir, 'full')).length;
      expect(after - before, ctx).toBe(winners.length);
      expect(fs.existsSync(lockFile()), ctx).toBe(false);
    }
    const v = await cli(['verify', '--all', ...flags], { cwd });
    expect(v.code, show(v)).toBe(0);
  });

  it(`${LOCK_TRIALS} races of ${LOCK_RACERS} processes over one stale holder file: the hold times of the winners never overlap`, async () => {
    // Each racer is a real process that imports the built lock module, spins until a common start
    // time, takes the lock, holds it for 100 ms and records when. Any overlap is two holders at once.
    const dir = path.join(cwd, 'lockrace');
    const racer = path.join(cwd, 'racer.mjs');
    fs.writeFileSync(
      racer,
      `const [,, dir, t0, out] = process.argv;
const { acquireLock } = await import(${JSON.stringify(path.join(REPO, 'dist/catalog/lock.js'))});
while (Date.now() < Number(t0)) {}
let res;
try {
  const lock = await acquireLock(dir, 'racer');
  const a = Date.now();
  await new Promise((r) => setTimeout(r, 100));
  const b = Date.now();
  lock.release();
  res = { ok: true, a, b };
} catch (e) { res = { ok: false, code: e.code }; }
(await import('node:fs')).writeFileSync(out, JSON.stringify(res));
`,
    );
    for (let t = 0; t < LOCK_TRIALS; t++) {
      rmrf(dir);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, '.vertex-backup.lock'), JSON.stringify({ pid: deadPid(), hostname: os.hostname(), started_at: 'x', command: 'killed run' }));
      const t0 = Date.now() + 1500;
      const kids = Array.from({ length: LOCK_RACERS }, (_, i) => spawn(process.execPath, [racer, dir, String(t0), path.join(dir, `out-${i}.json`)], { stdio: 'ignore' }));
      await Promise.all(kids.map((k) => new Promise((r) => k.on('close', r))));
      const res = kids.map((_, i) => JSON.parse(fs.readFileSync(path.join(dir, `out-${i}.json`), 'utf8')) as { ok: boolean; a: number; b: number; code?: string });
      expect(res.every((r) => r.ok || r.code === 'LOCKED'), JSON.stringify(res)).toBe(true);
      const w = res.filter((r) => r.ok).sort((x, y) => x.a - y.a);
      expect(w.length).toBeGreaterThanOrEqual(1);
      for (let i = 1; i < w.length; i++) expect(w[i].a, `trial ${t}: two processes held the lock at once: ${JSON.stringify(w)}`).toBeGreaterThanOrEqual(w[i - 1].b);
      // the holder file is gone; the kernel lock's file stays (removing it would race with its takers)
      expect(fs.readdirSync(dir).filter((n) => n.startsWith('.vertex-backup')).sort(), `trial ${t}`).toEqual(['.vertex-backup.lock.db', '.vertex-backup.status.lock']);
    }
  });
});

describe('rotate during create', () => {
  it('never removes the backup being written: it exits 4, or with --wait runs after and keeps it', async () => {
    // the create stops itself holding the lock (a loaded machine may otherwise finish it before the rotate starts)
    const c = startCli(['create', '--type', 'full', '--json', ...flags], { cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'create-locked' } });
    const stopped = () => fs.readFileSync(`/proc/${c.child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
    await waitFor(stopped, 60_000, 'create to take the lock', 2);
    const r = await cli(['rotate', '--max-backups', '1', ...flags], { cwd });
    expect(r.code, show(r)).toBe(4);
    const waiting = startCli(['rotate', '--max-backups', '1', '--wait', '120', '--json', ...flags], { cwd });
    // the waiting rotate must be waiting before the create goes on
    await new Promise((res) => setTimeout(res, 1500));
    c.child.kill('SIGCONT');
    const cr = await c.done;
    expect(cr.code, show(cr)).toBe(0);
    const id = json(cr).id as string;
    const rr = await waiting.done;
    expect(rr.code, show(rr)).toBe(0);
    const removed = (json(rr).removed as { id: string }[]).map((x) => x.id);
    expect(removed).not.toContain(id);
    const l = json(await cli(['list', '--json', ...flags], { cwd })) as { type: string; id: string; status: string }[];
    expect(l.filter((e) => e.type === 'full').map((e) => `${e.id} ${e.status}`)).toEqual([`${id} ok`]);
    const v = await cli(['verify', id, ...flags], { cwd });
    expect(v.code, show(v)).toBe(0);
  });

  it('random start offsets: a rotate racing a create never leaves the new backup damaged or missing', async () => {
    for (let t = 0; t < RACE_TRIALS; t++) {
      // both wait for the lock: whichever wins (the rotate may start first when the create's start-up is
      // slow), the other runs after it, and the new backup must come out whole and kept
      const c = startCli(['create', '--type', 'full', '--json', '--wait', '120', ...flags], { cwd });
      await new Promise((res) => setTimeout(res, R.int(0, 400)));
      const rot = await cli(['rotate', '--max-backups', '1', '--wait', '120', ...flags], { cwd });
      const cr = await c.done;
      const ctx = `trial ${t} (seed ${R.seed})`;
      expect(rot.code === 0 || rot.code === 4, `${ctx}\n${show(rot)}`).toBe(true);
      expect(cr.code, `${ctx}\n${show(cr)}`).toBe(0);
      const id = json(cr).id as string;
      const v = await cli(['verify', id, ...flags], { cwd });
      expect(v.code, `${ctx}\n${show(v)}`).toBe(0);
    }
  });
});
