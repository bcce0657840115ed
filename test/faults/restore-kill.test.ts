/**
 * Issue 11: kill -9 during each phase of a full restore (unpacking the storage, the database copied
 * aside, the database replaced, each rename of the swap), on a plain directory and on a mount point
 * (tmpfs). Afterwards the live database and storage are wholly old or wholly new, together; the next
 * command heals an interrupted restore, says which way, and leaves no staging behind.
 *
 * Every named point runs in `npm test` with 3 kills at random instants per kind; FAULT_TRIALS=full runs 12.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type AppFixture, makeApp, rmrf, snapshot, sqlite } from '../helpers/fixtures.js';
import { cli, rng, type RunResult, show, sleep, startCli, trials } from '../helpers/faults.js';

const ROOT = process.getuid?.() === 0;
const mounts: string[] = [];
const apps: AppFixture[] = [];
afterAll(() => {
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  for (const a of apps) rmrf(a.cwd);
});

type Kind = 'plain directory' | 'mount point';

interface Trial {
  app: AppFixture;
  id: string;
  oldDb: string;
  newDb: string;
  oldTree: unknown;
  newTree: unknown;
}

/** The database as SQL text, hashed (the dump is megabytes). */
function dump(db: string): string {
  const r = spawnSync('sqlite3', ['-batch', db, '.dump'], { maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`sqlite3 ${db} .dump: ${r.stderr}`);
  return createHash('sha256').update(r.stdout).digest('hex');
}
const tree = (p: string) => (fs.existsSync(p) ? snapshot(p, { exclude: (rel) => rel.startsWith('.pre-restore-'), dirTimes: false }) : 'missing');

/** An application with a full backup ("new"), then changed ("old"): what a restore goes from and to. */
async function prepare(kind: Kind): Promise<Trial> {
  const app = makeApp({ journalMode: 'wal', events: 20_000, randomBytes: 2 * 1024 * 1024 });
  apps.push(app);
  if (kind === 'mount point') {
    const copy = `${app.storagePath}.copy`;
    fs.renameSync(app.storagePath, copy);
    fs.mkdirSync(app.storagePath);
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256m', 'tmpfs', app.storagePath]);
    if (m.status !== 0) throw new Error(`mount tmpfs: ${m.stderr}`);
    mounts.push(app.storagePath);
    spawnSync('cp', ['-a', `${copy}/.`, app.storagePath]);
    fs.rmSync(copy, { recursive: true });
  }
  const r = await cli(['create', '--type', 'full', '--json', ...app.flags], { cwd: app.cwd });
  if (r.code !== 0) throw new Error(show(r));
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  const newDb = dump(app.dbPath);
  const newTree = tree(app.storagePath);
  sqlite(app.dbPath, "INSERT INTO clients(name) VALUES ('after the backup'); DELETE FROM scan_events WHERE id % 3 = 0;");
  for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(app.storagePath, `after-${i}.txt`), `after ${i}\n`);
  fs.rmSync(path.join(app.storagePath, 'markers'), { recursive: true, force: true });
  return { app, id, oldDb: dump(app.dbPath), newDb, oldTree: tree(app.storagePath), newTree };
}

/** 'old' or 'new' when database and storage agree, else a description of the mix. */
function state(t: Trial): string {
  const db = dump(t.app.dbPath);
  const st = tree(t.app.storagePath);
  const dbIs = db === t.oldDb ? 'old' : db === t.newDb ? 'new' : 'neither';
  const stIs = JSON.stringify(st) === JSON.stringify(t.oldTree) ? 'old' : JSON.stringify(st) === JSON.stringify(t.newTree) ? 'new' : st === 'missing' ? 'missing' : 'neither';
  return dbIs === stIs ? dbIs : `database ${dbIs}, storage ${stIs}`;
}

function leftovers(app: AppFixture): string[] {
  const out: string[] = [];
  for (const dir of [path.dirname(app.storagePath), path.dirname(app.dbPath), app.backupDir]) {
    for (const n of fs.readdirSync(dir)) if (/\.restore-|\.tmp$|restore-in-progress|^\.remote-restore-/.test(n)) out.push(path.join(dir, n));
  }
  if (fs.existsSync(app.storagePath)) for (const n of fs.readdirSync(app.storagePath)) if (n.startsWith('.vertex-restore-')) out.push(n);
  return out;
}

async function stopped(pid: number, done: { exited: boolean }): Promise<boolean> {
  for (;;) {
    if (done.exited) return false;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return true;
    } catch {
      return false;
    }
    await sleep(2);
  }
}

/** Restores, killed at `point` (a fault point) or after `afterMs`; returns the run and whether the kill landed. */
async function killedRestore(t: Trial, kill: { point: string } | { afterMs: number; afterPhase?: string }): Promise<{ r: RunResult; killed: boolean }> {
  const env = 'point' in kill ? { VERTEX_BACKUP_FAULT_POINT: kill.point } : {};
  const run = startCli(['restore', t.id, '--yes', ...t.app.flags], { cwd: t.app.cwd, env });
  const done = { exited: false };
  run.child.on('exit', () => (done.exited = true));
  let killed = false;
  if ('point' in kill) {
    if (await stopped(run.child.pid!, done)) {
      run.child.kill('SIGKILL');
      killed = true;
    }
  } else {
    // from the moment the journal names the phase (it is polled, so the kill lands a little later)
    const journal = path.join(t.app.backupDir, '.restore-in-progress.json');
    while (kill.afterPhase && !done.exited) {
      if ((fs.existsSync(journal) ? fs.readFileSync(journal, 'utf8') : '').includes(`"phase":"${kill.afterPhase}"`)) break;
      await sleep(1);
    }
    await sleep(kill.afterMs);
    killed = run.child.kill('SIGKILL') && !done.exited;
  }
  return { r: await run.done, killed };
}

/** The next command (a plain `list`) heals; it must say what it did, and leave nothing behind. */
async function heal(t: Trial): Promise<RunResult> {
  const r = await cli(['list', ...t.app.flags], { cwd: t.app.cwd });
  expect(r.code, show(r)).toBe(0);
  expect(leftovers(t.app)).toEqual([]);
  return r;
}

const POINTS: { point: string; expect: 'old' | 'new'; kinds: Kind[] }[] = [
  { point: 'staging', expect: 'old', kinds: ['plain directory', 'mount point'] },
  { point: 'staged', expect: 'old', kinds: ['plain directory', 'mount point'] },
  { point: 'database', expect: 'old', kinds: ['plain directory', 'mount point'] },
  { point: 'database-done', expect: 'old', kinds: ['plain directory', 'mount point'] },
  { point: 'storage', expect: 'new', kinds: ['plain directory', 'mount point'] },
  { point: 'swap-between-renames', expect: 'new', kinds: ['plain directory'] },
  { point: 'swap-moving-old', expect: 'new', kinds: ['mount point'] },
  { point: 'swap-moving-new', expect: 'new', kinds: ['mount point'] },
];

const MESSAGE = { old: /rolled back the restore|removed what an interrupted restore .* had staged; nothing live had been changed/, new: /completed the restore of/ };

for (const kind of ['plain directory', 'mount point'] as Kind[]) {
  const suite = kind === 'mount point' && !ROOT && !process.env.CI ? describe.skip : describe;
  suite(`restore killed at each phase: ${kind}${kind === 'mount point' ? ' (tmpfs; needs root)' : ''}`, () => {
    for (const p of POINTS.filter((x) => x.kinds.includes(kind))) {
      it(`killed at '${p.point}': the next command makes the live data wholly ${p.expect} and says so`, async () => {
        const t = await prepare(kind);
        const { r, killed } = await killedRestore(t, { point: p.point });
        expect(killed, show(r)).toBe(true);
        const h = await heal(t);
        expect(h.stderr).toMatch(MESSAGE[p.expect]);
        expect(state(t)).toBe(p.expect);
        // and a second command has nothing left to heal
        const again = await cli(['list', ...t.app.flags], { cwd: t.app.cwd });
        expect(again.stderr).not.toMatch(/interrupted|rolled back|completed the restore/);
        // the application can be backed up and restored again
        const c = await cli(['create', '--type', 'full', ...t.app.flags], { cwd: t.app.cwd });
        expect(c.code, show(c)).toBe(0);
      });
    }

    const n = trials(3, 12);
    it(`${n} kills at random instants: always wholly old or wholly new after the next command`, async () => {
      const rand = rng(`restore-kill ${kind}`);
      const outcomes: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const t = await prepare(kind);
        // a third of the kills anywhere in the run, a third once the live database is being replaced, a
        // third once the storage swap has begun
        const kill = [{ afterMs: rand.int(150, 1500) }, { afterPhase: 'database', afterMs: rand.int(0, 60) }, { afterPhase: 'storage', afterMs: rand.int(0, 3) }][i % 3]!;
        const { r, killed } = await killedRestore(t, kill);
        await heal(t);
        const s = state(t);
        if (!killed) expect(r.code, show(r)).toBe(0);
        expect(['old', 'new'], `trial ${i}: ${s}`).toContain(s);
        const key = killed ? `killed, healed to ${s}` : 'finished before the kill';
        outcomes[key] = (outcomes[key] ?? 0) + 1;
        if (kind === 'mount point') spawnSync('umount', [t.app.storagePath]);
        fs.rmSync(t.app.cwd, { recursive: true, force: true });
      }
      // eslint-disable-next-line no-console
      console.log(`[faults] restore-kill ${kind}: ${JSON.stringify(outcomes)}`);
    });
  });
}
