/**
 * Issue 13, item 10: under --json every command prints exactly one JSON document, argument errors that
 * commander rejects included, and every document uses one key casing (snake_case).
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

let app: AppFixture;
beforeAll(async () => {
  app = makeApp({ randomBytes: 64 * 1024, events: 100 });
  const r = await run(['create', '--json', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
});
afterAll(() => rmrf(app?.cwd));

/** Every object key in a document, at any depth. */
function keysOf(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) keysOf(x, out);
  else if (v && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      out.push(k);
      keysOf(x, out);
    }
  }
  return out;
}

describe('argument errors under --json', () => {
  const cases: [string, string[]][] = [
    ['create --type foo', ['create', '--json', '--type', 'foo']],
    ['list --bogus', ['list', '--json', '--bogus']],
    ['--json before an unknown command', ['--json', 'nosuch']],
    ['verify with a missing argument value', ['verify', '--json', '--backup-dir']],
  ];
  it.each(cases)('%s: one JSON error document, exit 2', async (_name, args) => {
    const r = await run(args, { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    const doc = parseJsonStdout<{ ok: boolean; error: { code: string; exit_code: number; message: string } }>(r);
    expect(doc.ok).toBe(false);
    expect(doc.error.code).toBe('USAGE');
    expect(doc.error.exit_code).toBe(2);
    expect(doc.error.message.length).toBeGreaterThan(5);
  });
});

describe('one key casing', () => {
  const commands: [string, () => string[]][] = [
    ['create', () => ['create', '--type', 'database', ...app.flags]],
    ['list', () => ['list', '--backup-dir', app.backupDir]],
    ['stats', () => ['stats', '--backup-dir', app.backupDir]],
    ['verify --all', () => ['verify', '--all', '--backup-dir', app.backupDir]],
    ['rotate --dry-run', () => ['rotate', '--dry-run', '--max-backups', '1', '--backup-dir', app.backupDir]],
    ['check', () => ['check', '--backup-dir', app.backupDir]],
    ['schedule --list', () => ['schedule', '--list', '--backup-dir', app.backupDir]],
    ['an error', () => ['verify', 'nope', '--backup-dir', path.join(app.cwd, 'none')]],
  ];
  it.each(commands)('%s: snake_case keys only', async (_name, args) => {
    const r = await run([...args(), '--json'], { cwd: app.cwd });
    const doc = parseJsonStdout(r);
    const camel = keysOf(doc).filter((k) => /^[a-z]+[A-Z]/.test(k));
    expect(camel, describeRun(r)).toEqual([]);
  });
});
