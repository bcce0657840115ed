/**
 * Issue 13, item 8: help and output details an operator meets: the help example that works, global
 * options in subcommand help, `restore latest` saying what it picked, tables that fit, `check`
 * printing each failure once, one age format.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

let app: AppFixture;
beforeAll(async () => {
  app = makeApp({ randomBytes: 64 * 1024, events: 100 });
  const r = await run(['create', '--type', 'storage', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
});
afterAll(() => rmrf(app?.cwd));

describe('help', () => {
  it("the top-level help's per-command example is one that works", async () => {
    const top = await run(['--help'], { cwd: app.cwd });
    const m = /^\s+(vertex-backup help <command>)/m.exec(top.stdout);
    expect(m, top.stdout).not.toBeNull();
    const r = await run(['help', 'create'], { cwd: app.cwd });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Usage: vertex-backup create/);
  });

  it('subcommand help lists the global options', async () => {
    const r = await run(['list', '--help'], { cwd: app.cwd });
    expect(r.code).toBe(0);
    for (const opt of ['--backup-dir', '--json', '--config', '--quiet']) expect(r.stdout).toContain(opt);
  });
});

describe('restore latest without a full backup', () => {
  it('says which backup "latest" picked', async () => {
    const target = path.join(app.cwd, 'restored');
    const r = await run(['restore', 'latest', '--target', target, '--yes', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).toMatch(/"latest" is the storage backup \d{8}_\d{6}: there is no full backup/);
  });
});

describe('tables and check output', () => {
  it('a damaged row with a long reason keeps the table within 100 columns; the reason follows it', async () => {
    const dir = path.join(app.cwd, 'long-reason');
    const deep = path.join(dir, 'storage');
    fs.mkdirSync(deep, { recursive: true });
    const id = '20240101_000000';
    const name = `storage_backup_${id}.tar.gz`;
    fs.writeFileSync(path.join(deep, name), 'short');
    fs.writeFileSync(path.join(deep, `storage_backup_${id}.json`), JSON.stringify({ format: 1, id, type: 'storage', timestamp: id, created_at: '2024-01-01T00:00:00Z', backup_path: name, file_size: 999999, checksum: 'a'.repeat(64), compression: 'gzip' }));
    const r = await run(['list', '--backup-dir', dir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const lines = r.stdout.split('\n');
    const table = lines.filter((l) => /^[┌│└]/.test(l));
    expect(Math.max(...table.map((l) => l.length))).toBeLessThanOrEqual(100);
    expect(r.stdout).toMatch(/damaged \[1\]/);
    expect(r.stdout).toMatch(/^\[1\] .*999999/m);
  });

  it('check prints each failure once', async () => {
    // the newest storage backup may be only a second old on a fast run: older than 1s for certain
    await new Promise((r) => setTimeout(r, 2100));
    const r = await run(['check', '--max-age', '1s', ...app.flags], { cwd: app.cwd });
    expect(r.code).toBe(1);
    const all = r.stdout + r.stderr;
    expect(all.match(/newest ok storage backup \d{8}_\d{6} is /g), all).toHaveLength(1);
    // and in no other words either: one line about the stale storage backup
    const lines = all.split('\n').filter((l) => /storage/.test(l) && /✘|error:|too old/.test(l));
    expect(lines, all).toHaveLength(1);
  });

  it('one age format in stats and check', async () => {
    const s = await run(['stats', ...app.flags], { cwd: app.cwd });
    expect(s.stdout).toMatch(/\d{8}_\d{6} \((\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s) ago\)/);
    const c = await run(['check', '--type', 'storage', ...app.flags], { cwd: app.cwd });
    expect(c.stdout).toMatch(/\((\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s) old\)/);
    expect(s.stdout + c.stdout).not.toMatch(/\d s ago|days ago|\d+ min\b/);
  });
});
