/**
 * Issue 30: an attacker who can write one place the tool reads (the backup directory on a NAS or a
 * mounted disk, the app user's own tree, a shared metrics directory) must not be able to make a run
 * delete, move, overwrite, leak or hang. Each test plants what such a neighbour can plant and runs the
 * built binary as an operator would.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, type RunResult, start } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, tempDir } from '../helpers/fixtures.js';

const ROOT = process.getuid?.() === 0;
/** needs root (files of another owner): skipped by name outside CI when not root; under CI we are root */
const asRoot = ROOT || process.env.CI ? it : it.skip;

const apps: AppFixture[] = [];
const scratch: string[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
  for (const d of scratch) rmrf(d);
});

function newApp(opts: Parameters<typeof makeApp>[0] = {}): AppFixture {
  const app = makeApp({ journalMode: 'delete', events: 200, randomBytes: 16 * 1024, ...opts });
  apps.push(app);
  return app;
}
const vb = (app: AppFixture, args: string[], extra: { env?: Record<string, string | undefined>; timeoutMs?: number } = {}) =>
  run([...args, ...app.flags], { cwd: app.cwd, timeoutMs: extra.timeoutMs ?? 60_000, env: extra.env });
const noStack = (r: RunResult) => expect(r.stderr, describeRun(r)).not.toMatch(/^\s+at\s/m);

async function createBackup(app: AppFixture, type = 'full'): Promise<string> {
  const r = await vb(app, ['create', '--type', type, '--json']);
  expect(r.code, describeRun(r)).toBe(0);
  return parseJsonStdout<{ id: string }>(r).id;
}

describe('1. a planted .restore-in-progress.json', () => {
  it('naming paths that are not the configured live ones is not acted on by any command (list included)', async () => {
    const app = newApp();
    fs.mkdirSync(app.backupDir, { recursive: true });
    const victim = tempDir('vb-victim-');
    scratch.push(victim);
    fs.writeFileSync(path.join(victim, 'secret'), 'root only\n');
    const victimFile = path.join(victim, 'precious.db');
    fs.writeFileSync(victimFile, 'precious\n');
    const attacker = tempDir('vb-attacker-');
    scratch.push(attacker);
    fs.writeFileSync(path.join(attacker, 'planted'), 'mine\n');
    const journal = path.join(app.backupDir, '.restore-in-progress.json');
    // phase storage: the old code renamed the victim aside and the attacker's tree into its place
    fs.writeFileSync(
      journal,
      JSON.stringify({
        id: 'x',
        pid: 1,
        started_at: new Date().toISOString(),
        phase: 'storage',
        storage: { dest: victim, mode: 'rename', staging: attacker, newTree: attacker, previous: `${victim}.gone` },
      }),
    );
    const r = await vb(app, ['list']);
    expect(r.code, describeRun(r)).toBe(0);
    noStack(r);
    expect(fs.readFileSync(path.join(victim, 'secret'), 'utf8')).toBe('root only\n');
    expect(fs.existsSync(`${victim}.gone`)).toBe(false);
    expect(fs.existsSync(path.join(attacker, 'planted'))).toBe(true);
    expect(r.stderr).toMatch(/ignored the journal of an interrupted restore/);
    expect(fs.existsSync(journal)).toBe(false);

    // phase staging: the old code removed whatever asideTemp and staging named
    fs.writeFileSync(
      journal,
      JSON.stringify({ id: 'x', pid: 1, started_at: '', phase: 'staging', database: { live: app.dbPath, asideTemp: victimFile } }),
    );
    const r2 = await vb(app, ['stats']);
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(fs.readFileSync(victimFile, 'utf8')).toBe('precious\n');

    // phase database without a copy aside: the old code deleted the "live" database it named
    fs.writeFileSync(journal, JSON.stringify({ id: 'x', pid: 1, started_at: '', phase: 'database', database: { live: victimFile } }));
    const r3 = await vb(app, ['list']);
    expect(r3.code, describeRun(r3)).toBe(0);
    expect(fs.readFileSync(victimFile, 'utf8')).toBe('precious\n');

    // the configured live database, but a traversing staging name
    fs.writeFileSync(
      journal,
      JSON.stringify({
        id: '../../x',
        pid: 1,
        started_at: '',
        phase: 'staging',
        storage: { dest: app.storagePath, mode: 'rename', staging: victim },
      }),
    );
    const r4 = await vb(app, ['list']);
    expect(r4.code, describeRun(r4)).toBe(0);
    expect(fs.readFileSync(path.join(victim, 'secret'), 'utf8')).toBe('root only\n');
  });
});

/** Waits until `pid` stops itself at a fault point (VERTEX_BACKUP_FAULT_POINT); false when it exited first. */
async function stoppedAtFaultPoint(pid: number, done: { exited: boolean }): Promise<boolean> {
  for (;;) {
    if (done.exited) return false;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return true;
    } catch {
      return false;
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

describe('5. the database copy is private while it is written', () => {
  it('from a shell with umask 022 the temp copy is 0600 from its first byte', async () => {
    const app = newApp({ events: 3000 });
    const old = process.umask(0o022);
    let child: ReturnType<typeof start>;
    try {
      child = start(['create', '--type', 'database', ...app.flags], { cwd: app.cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'database-copy' } });
    } finally {
      process.umask(old);
    }
    const done = { exited: false };
    child.child.on('exit', () => (done.exited = true));
    const stopped = await stoppedAtFaultPoint(child.child.pid!, done);
    const dir = path.join(app.backupDir, 'database');
    const temps = stopped ? fs.readdirSync(dir).filter((n) => n.includes('.tmp')) : [];
    const modes = temps.map((n) => `${n} ${(fs.statSync(path.join(dir, n)).mode & 0o777).toString(8)}`);
    child.child.kill('SIGKILL');
    const r = await child.done;
    expect(stopped, describeRun(r)).toBe(true);
    expect(temps.length).toBeGreaterThan(0);
    for (const m of modes) expect(m).toMatch(/ 600$/);
  });
});
