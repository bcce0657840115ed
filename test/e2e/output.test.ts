/**
 * Issue 2, item 8: --json prints exactly one JSON document on stdout for every command (success and
 * failure); human output has no escape codes without a TTY; NO_COLOR and --no-color are honoured on a
 * TTY; every command's --help exits 0 with examples; --version.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANSI, BIN, describeRun, parseJsonStdout, REPO, run, runTty } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf } from '../helpers/fixtures.js';

const SGR = /\x1b\[[0-9;]*m/;

let app: AppFixture;
let id: string;
let damagedDir: string;

beforeAll(async () => {
  app = makeApp({ randomBytes: 256 * 1024, events: 200 });
  const r = await run(['create', '--json', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  id = parseJsonStdout<{ id: string }>(r).id;
  // a second backup directory with a damaged backup, for the exit-3 paths
  damagedDir = path.join(app.cwd, 'damaged');
  const d = await run(['create', '--type', 'database', '--db-path', app.dbPath, '--backup-dir', damagedDir], { cwd: app.cwd });
  expect(d.code, describeRun(d)).toBe(0);
  const db = fs.readdirSync(path.join(damagedDir, 'database')).find((n) => n.endsWith('.db'))!;
  flipByte(path.join(damagedDir, 'database', db));
});
afterAll(() => rmrf(app?.cwd));

describe('--json: stdout is exactly one JSON document', () => {
  const cases: [string, () => string[], number, (doc: any) => void][] = [
    ['create', () => ['create', '--type', 'database', '--db-path', app.dbPath, '--backup-dir', app.backupDir], 0, (d) => expect(d.ok).toBe(true)],
    ['list', () => ['list', '--backup-dir', app.backupDir], 0, (d) => expect(d.find((e: any) => e.id === id && e.type === 'full')?.status).toBe('ok')],
    ['list --type storage', () => ['list', '--type', 'storage', '--backup-dir', app.backupDir], 0, (d) => expect(d.every((e: any) => e.type === 'storage')).toBe(true)],
    ['stats', () => ['stats', '--backup-dir', app.backupDir], 0, (d) => expect(d.types.find((t: any) => t.type === 'full').count).toBeGreaterThanOrEqual(1)],
    ['verify', () => ['verify', id, '--backup-dir', app.backupDir], 0, (d) => expect(d.ok).toBe(true)],
    ['verify --all', () => ['verify', '--all', '--backup-dir', app.backupDir], 0, (d) => expect(d.results.length).toBeGreaterThanOrEqual(3)],
    ['verify (damaged, exit 3)', () => ['verify', '--all', '--backup-dir', damagedDir], 3, (d) => expect(d.ok).toBe(false)],
    ['create failing (exit 2)', () => ['create', '--db-path', 'nope.db', '--backup-dir', path.join(app.cwd, 'nope')], 2, (d) => expect(d.ok).toBe(false)],
    ['list of an empty directory', () => ['list', '--backup-dir', path.join(app.cwd, 'empty-dir')], 0, (d) => expect(d).toEqual([])],
  ];
  it.each(cases)('%s', async (_name, args, code, check) => {
    const r = await run([...args(), '--json'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(code);
    const doc = parseJsonStdout(r);
    check(doc);
    expect(r.stdout).not.toMatch(ANSI);
  });

  it('--json before the subcommand works the same', async () => {
    const r = await run(['--json', 'list', '--backup-dir', app.backupDir], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(Array.isArray(parseJsonStdout(r))).toBe(true);
  });
});

describe('human output', () => {
  it('has no escape codes when stdout and stderr are not a TTY (cron, systemd, pipes)', async () => {
    const runs = [
      await run(['create', '--type', 'database', ...app.flags], { cwd: app.cwd }),
      await run(['list', '--backup-dir', app.backupDir], { cwd: app.cwd }),
      await run(['stats', '--backup-dir', app.backupDir], { cwd: app.cwd }),
      await run(['verify', '--all', '--backup-dir', app.backupDir], { cwd: app.cwd }),
      await run(['verify', '--all', '--backup-dir', damagedDir], { cwd: app.cwd }),
      await run(['list', '--backup-dir', damagedDir], { cwd: app.cwd }),
      await run(['create', '--db-path', 'nope.db', '--backup-dir', path.join(app.cwd, 'nope2')], { cwd: app.cwd }),
    ];
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0, 3, 0, 2]);
    for (const r of runs) {
      expect(r.stdout, describeRun(r)).not.toMatch(ANSI);
      expect(r.stderr, describeRun(r)).not.toMatch(ANSI);
    }
    // not empty either: human mode prints something a person can read
    expect(runs[1].stdout).toContain(id);
    expect(runs[4].stdout + runs[4].stderr).toMatch(/DAMAGED|damaged/);
  });

  it('on a TTY it is coloured, and NO_COLOR=1 or --no-color turn the colours off', () => {
    const args = ['list', '--backup-dir', app.backupDir];
    const coloured = runTty(args, { cwd: app.cwd });
    expect(coloured.code, coloured.output).toBe(0);
    expect(coloured.output, 'colours on a TTY (else this test proves nothing)').toMatch(SGR);
    const noColorEnv = runTty(args, { cwd: app.cwd, env: { NO_COLOR: '1' } });
    expect(noColorEnv.code).toBe(0);
    expect(noColorEnv.output).toContain(id);
    expect(noColorEnv.output, 'NO_COLOR=1').not.toMatch(SGR);
    const noColorFlag = runTty([...args, '--no-color'], { cwd: app.cwd });
    expect(noColorFlag.code).toBe(0);
    expect(noColorFlag.output, '--no-color').not.toMatch(SGR);
    // the error path too
    const err = runTty(['create', '--db-path', 'nope.db', '--backup-dir', path.join(app.cwd, 'nope3')], { cwd: app.cwd, env: { NO_COLOR: '1' } });
    expect(err.code).toBe(2);
    expect(err.output).toMatch(/error: /);
    expect(err.output).not.toMatch(SGR);
  });

  it('NO_COLOR=1 and --no-color also hold for the progress spinner (verify on a TTY)', () => {
    const args = ['verify', '--all', '--backup-dir', damagedDir];
    for (const [what, extra, env] of [
      ['NO_COLOR=1', [], { NO_COLOR: '1' }],
      ['--no-color', ['--no-color'], {}],
    ] as const) {
      const verify = runTty([...args, ...extra], { cwd: app.cwd, env });
      expect(verify.code, verify.output).toBe(3);
      expect(verify.output).toMatch(/DAMAGED/);
      const sgr = verify.output.match(new RegExp(SGR.source, 'g')) ?? [];
      expect(sgr, `${what}: colour codes on the terminal: ${JSON.stringify(verify.output.slice(0, 200))}`).toEqual([]);
    }
  });
});

describe('--help and --version', () => {
  it.each([[[]], [['create']], [['list']], [['stats']], [['verify']]])('%j --help exits 0 and shows examples', async (cmd) => {
    const r = await run([...cmd, '--help'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toContain('Examples');
    expect(r.stdout).toMatch(/Usage: vertex-backup/);
    expect(r.stdout).not.toMatch(ANSI);
    if (cmd.length === 0) {
      expect(r.stdout).toMatch(/Exit codes/);
      for (const c of ['create', 'list', 'stats', 'verify']) expect(r.stdout).toContain(c);
    } else {
      expect(r.stdout).toContain(`vertex-backup ${cmd[0]}`);
    }
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await run([flag], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      expect(r.stdout.trim()).toBe(pkg.version);
    }
  });

  it('an unknown command exits 2 with one error line', async () => {
    const r = await run(['backupp'], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/^error: .*backupp/m);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('a closed pipe', () => {
  it('vertex-backup --help | true: exits 0 without an EPIPE crash', () => {
    // `true` exits without reading, so every write of ours hits a closed pipe
    const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BIN}" --help | true`], { encoding: 'utf8' });
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(r.status).toBe(0);
  });
});
