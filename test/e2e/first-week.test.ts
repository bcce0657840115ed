/**
 * Issue 29 ("an operator's first week"), behaviour items run through the binary as a user starts it:
 * item 7, options that configure the tool work before or after the command name; item 12, a missing
 * --env-file is reported by vertex-backup (exit 2), not by Node (exit 9).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, baseEnv, describeRun, type RunResult, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

let app: AppFixture;
beforeAll(() => {
  app = makeApp({ randomBytes: 8 * 1024, events: 10 });
  fs.mkdirSync(path.join(app.cwd, 'nas'));
  fs.writeFileSync(path.join(app.cwd, 'elsewhere.json'), JSON.stringify({ remotes: { nas: { url: `file://${path.join(app.cwd, 'nas')}` } } }));
});
afterAll(() => rmrf(app?.cwd));

/** The binary run by its own #! line, as `vertex-backup …` on PATH runs it (not `node bin/…`). */
function runAsInstalled(args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(BIN, args, { cwd: app.cwd, env: baseEnv(app.cwd), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

describe('item 12: --env-file naming a missing file', () => {
  it.for([
    ['--env-file', 'missing.env', 'list'],
    ['list', '--env-file', 'missing.env'],
    ['list', '--env-file=missing.env', '--json'],
  ])('%s %s %s: the tool says so, exit 2', async (args) => {
    const r = await runAsInstalled(args);
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).not.toMatch(/^node:/m);
    expect(`${r.stderr}${r.stdout}`).toMatch(/env file not found: .*missing\.env/);
  });

  it('an existing (even empty) env file is read as before', async () => {
    fs.writeFileSync(path.join(app.cwd, 'empty.env'), '');
    const r = await runAsInstalled(['list', '--env-file', 'empty.env']);
    expect(r.code, describeRun(r)).toBe(0);
  });
});

describe('item 7: options that configure the tool work before or after the command name', () => {
  it.for([
    [['--remotes-config', 'elsewhere.json', 'remote', 'list', '--json']],
    [['remote', 'list', '--json', '--remotes-config', 'elsewhere.json']],
    [['--remotes-config', 'elsewhere.json', 'list', '--remote', 'nas', '--json']],
    [['--json', '--backup-dir', 'backups', 'list', '--remotes-config', 'elsewhere.json', '--remote', 'nas']],
  ])('%s', async ([args]) => {
    const r = await run(args, { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).not.toMatch(/unknown option/);
    JSON.parse(r.stdout);
  });
});

describe('item 6: a path-only restore of a full backup touches only storage; --only picks a half', () => {
  let id: string;
  const storageName = () => path.basename(app.storagePath);
  const dbName = () => path.basename(app.dbPath);
  const target = (name: string) => {
    const t = path.join(app.cwd, name);
    fs.mkdirSync(t);
    return t;
  };
  beforeAll(async () => {
    const r = await run(['create', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    id = JSON.parse(r.stdout).id;
  });

  it('restore FULL_ID --include PATH --target DIR writes that path and no database', async () => {
    const first = fs.readdirSync(app.storagePath)[0];
    const t = target('include');
    const r = await run(['restore', id, '--include', first, '--target', t, '--yes', '--json', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.existsSync(path.join(t, storageName(), first))).toBe(true);
    expect(fs.readdirSync(t)).toEqual([storageName()]);
    expect(JSON.parse(r.stdout).database).toBeUndefined();
  });

  it('--only database and --only storage restore one half of a full backup', async () => {
    const d = target('only-db');
    const rd = await run(['restore', id, '--only', 'database', '--target', d, '--yes', ...app.flags], { cwd: app.cwd });
    expect(rd.code, describeRun(rd)).toBe(0);
    expect(fs.readdirSync(d).filter((f) => !f.startsWith('.'))).toEqual([dbName()]);
    const s = target('only-storage');
    const rs = await run(['restore', id, '--only', 'storage', '--target', s, '--yes', ...app.flags], { cwd: app.cwd });
    expect(rs.code, describeRun(rs)).toBe(0);
    expect(fs.readdirSync(s).filter((f) => !f.startsWith('.'))).toEqual([storageName()]);
  });

  it('--only with a half the backup does not hold, or a value that is no half, is exit 2', async () => {
    const db = await run(['create', '--type', 'database', '--json', ...app.flags], { cwd: app.cwd });
    const dbId = JSON.parse(db.stdout).id;
    const r = await run(['restore', dbId, '--only', 'storage', '--target', target('wrong-half'), '--yes', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/holds no storage/);
    const bad = await run(['restore', id, '--only', 'media', '--yes', ...app.flags], { cwd: app.cwd });
    expect(bad.code, describeRun(bad)).toBe(2);
  });
});

describe('item 8: one size per backup: stats agrees with list', () => {
  it('stats --json gives the full backups the size list gives them (size_bytes), and the total counts components once', async () => {
    const made = await run(['create', '--json', ...app.flags], { cwd: app.cwd });
    expect(made.code, describeRun(made)).toBe(0);
    const list = JSON.parse((await run(['list', '--json', ...app.flags], { cwd: app.cwd })).stdout) as { type: string; size_bytes: number }[];
    const stats = JSON.parse((await run(['stats', '--json', ...app.flags], { cwd: app.cwd })).stdout) as {
      types: { type: string; size_bytes: number }[];
      total_bytes: number;
    };
    const sum = (type: string) => list.filter((b) => b.type === type).reduce((s, b) => s + b.size_bytes, 0);
    const full = stats.types.find((t) => t.type === 'full')!;
    expect(sum('full')).toBeGreaterThan(0);
    expect(full.size_bytes).toBe(sum('full'));
    expect(stats.total_bytes).toBe(sum('database') + sum('storage'));
    const human = await run(['stats', ...app.flags], { cwd: app.cwd });
    expect(human.stdout).toMatch(/full\s*│\s*\d+\s*│\s*\d+\s*│\s*[\d.]+ (B|KiB|MiB)/);
  });
});
