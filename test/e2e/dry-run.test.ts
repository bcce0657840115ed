/**
 * Issue 13, item 2: `create --dry-run` walks the sources and reports what a backup would hold, each
 * --exclude with what it matched, a warning for one that matched nothing; nothing is written. An
 * exclude with a leading `/` is anchored at the storage root, and a real backup honours it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, sh } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

interface Plan {
  dry_run: boolean;
  files: number;
  bytes: number;
  estimated_size: number;
  storage: { files: number; bytes: number; estimated_size: number };
  excludes: { pattern: string; matched: number }[];
  warnings: string[];
}

let app: AppFixture;
beforeAll(() => {
  app = makeApp({ randomBytes: 256 * 1024, events: 100 });
  // a second "cache" deeper down: an anchored pattern must leave it in
  fs.mkdirSync(path.join(app.storagePath, 'images', 'cache'));
  fs.writeFileSync(path.join(app.storagePath, 'images', 'cache', 'keep.bin'), 'keep me\n');
});
afterAll(() => rmrf(app?.cwd));

const EXCLUDES = ['--exclude', '/cache', '--exclude', '*.tmp', '--exclude', 'storage/cache/**'];

describe('create --dry-run', () => {
  it('reports files, bytes, estimate and per-exclude matches; writes nothing', async () => {
    const r = await run(['create', '--dry-run', '--json', ...EXCLUDES, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const plan = parseJsonStdout<Plan>(r);
    expect(plan.dry_run).toBe(true);
    expect(plan.excludes).toEqual([
      { pattern: '/cache', matched: 1 },
      { pattern: '*.tmp', matched: 1 },
      { pattern: 'storage/cache/**', matched: 0 },
    ]);
    expect(plan.warnings).toEqual([expect.stringMatching(/exclude 'storage\/cache\/\*\*' matched nothing \(paths are relative to the storage directory .*: write 'cache\/\*\*' or '\/cache\/\*\*'\)/)]);
    expect(plan.storage.estimated_size).toBeGreaterThan(0);
    expect(fs.existsSync(app.backupDir)).toBe(false);

    // the same walk as a real backup: the file count agrees with what create then archives
    const c = await run(['create', '--type', 'storage', '--json', ...EXCLUDES, ...app.flags], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const made = parseJsonStdout<{ backups: { file_count?: number; files: string[] }[] }>(c).backups[0];
    expect(made.file_count).toBe(plan.storage.files);
    const names = sh('tar', ['-tzf', made.files[0]]).stdout.split('\n');
    expect(names.some((n) => /^(\.\/)?cache\//.test(n))).toBe(false);
    expect(names.some((n) => n.endsWith('images/cache/keep.bin'))).toBe(true);
    expect(names.some((n) => n.endsWith('.tmp'))).toBe(false);
  });

  it('human output names each exclude and warns once for the one that matched nothing', async () => {
    const r = await run(['create', '--dry-run', ...EXCLUDES, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toMatch(/dry run: create --type full would back up/);
    expect(r.stdout).toMatch(/exclude '\/cache': 1 path left out/);
    expect(r.stdout).toMatch(/the backup would add about/);
    expect(r.stderr.match(/matched nothing/g)).toHaveLength(1);
  });
});
