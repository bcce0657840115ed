/**
 * Issue 29 item 11: what sync says is counted as a person counts: backups and files sent, backups already
 * there (not "skipped 360" beside a backup of 30 files), and which backups the remote still holds that
 * rotation removed here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach(rmrf));

describe('sync output in words', () => {
  it('backups and files sent, backups already there, and what the remote holds that rotation removed here', async () => {
    const app = makeApp({ minimalStorage: true, events: 20 });
    dirs.push(app.cwd);
    const nas = path.join(app.cwd, 'nas');
    fs.mkdirSync(nas);
    const remote = ['--remote', pathToFileURL(nas).href];
    const create = async () => {
      const c = await run(['create', '--type', 'database', ...app.flags], { cwd: app.cwd });
      expect(c.code, describeRun(c)).toBe(0);
    };
    for (let i = 0; i < 3; i++) await create();
    const first = await run(['sync', ...remote, ...app.flags], { cwd: app.cwd });
    expect(first.code, describeRun(first)).toBe(0);
    // each database backup is its file and its sidecar: 3 backups, 6 files
    expect(first.stdout).toMatch(/: sent 3 backups \(6 files, [\d.]+ \S+\) in /);
    expect(first.stdout).not.toMatch(/skipped/);

    const again = await run(['sync', ...remote, ...app.flags], { cwd: app.cwd });
    expect(again.stdout).toMatch(/: up to date, 3 backups there/);

    const ids = parseJsonStdout<{ id: string }[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd })).map((b) => b.id);
    const rot = await run(['rotate', '--max-backups', '1', ...app.flags], { cwd: app.cwd });
    expect(rot.code, describeRun(rot)).toBe(0);
    await create();
    const third = await run(['sync', ...remote, ...app.flags], { cwd: app.cwd });
    expect(third.code, describeRun(third)).toBe(0);
    expect(third.stdout).toMatch(/: sent 1 backup \(2 files, [\d.]+ \S+\) in .*; 1 backup was already there/);
    // the two oldest are gone here and still on the remote: named, newest first
    expect(third.stdout).toContain(`still holds 2 backups that rotation removed here: database ${ids[1]}, database ${ids[2]}`);
    const doc = parseJsonStdout<{ remotes: { result: { removed_here: string[] } }[] }>(await run(['sync', '--json', ...remote, ...app.flags], { cwd: app.cwd }));
    expect(doc.remotes[0].result.removed_here).toEqual([`database:${ids[1]}`, `database:${ids[2]}`]);
  });
});
