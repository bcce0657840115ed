/**
 * Issue 17, item 2: coverage sampling. `verify --sample PCT` and `drill --sample PCT` pick what they
 * read so that repeated runs read every stored byte within ceil(100/PCT) runs; the state lives in the
 * backup directory (.sample-state.json) and survives between runs (separate processes here).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf } from '../helpers/fixtures.js';

type Doc = Record<string, any>;
const apps: AppFixture[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
});

async function setUp(): Promise<AppFixture> {
  const a = makeApp({ randomBytes: 2 * 1024 * 1024 });
  apps.push(a);
  for (const args of [['--type', 'full', '--split-size', '0.25'], ['--type', 'database'], ['--type', 'storage', '--split-size', '0.25']]) {
    const r = await run(['create', ...args, ...a.flags], { cwd: a.cwd });
    expect(r.code, describeRun(r)).toBe(0);
  }
  return a;
}

/** Every file a sidecar vouches for, relative to the backup directory (data files, parts, manifests). */
function storedFiles(backupDir: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const dir of ['database', 'storage']) {
    for (const name of fs.readdirSync(path.join(backupDir, dir))) {
      if (name.endsWith('.json')) continue;
      out.set(`${dir}/${name}`, fs.statSync(path.join(backupDir, dir, name)).size);
    }
  }
  return out;
}

describe('verify --sample PCT', () => {
  it('4 runs at 25% read every stored file once, each at least its share; the state survives between runs; the 5th starts a new cycle', async () => {
    const a = await setUp();
    const stored = storedFiles(a.backupDir);
    const total = [...stored.values()].reduce((n, s) => n + s, 0);
    expect(stored.size).toBeGreaterThan(10);
    const seen = new Set<string>();
    for (let i = 1; i <= 4; i++) {
      const r = await run(['verify', '--sample', '25', '--json', ...a.flags], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<Doc>(r);
      const files: string[] = doc.results.map((x: Doc) => x.file);
      for (const f of files) {
        expect(seen.has(f), `${f} read twice in one cycle`).toBe(false);
        seen.add(f);
      }
      if (i < 4) expect(doc.bytes_read).toBeGreaterThanOrEqual(total * 0.25);
      expect(doc.coverage).toMatchObject({ runs_in_cycle: i, runs_per_cycle: 4, total_bytes: total });
      if (i === 4) expect(doc.coverage.coverage_pct).toBe(100);
      else expect(doc.coverage.coverage_pct).toBeLessThan(100);
    }
    expect([...seen].sort()).toEqual([...stored.keys()].sort());
    const state = path.join(a.backupDir, '.sample-state.json');
    expect(fs.statSync(state).mode & 0o777).toBe(0o600);
    const next = parseJsonStdout<Doc>(await run(['verify', '--sample', '25', '--json', ...a.flags], { cwd: a.cwd }));
    expect(next.coverage.runs_in_cycle).toBe(1);

    // human output names the coverage
    const human = await run(['verify', '--sample', '25', ...a.flags], { cwd: a.cwd });
    expect(human.stdout).toMatch(/coverage [\d.]+% of .* after 2 of 4 runs/);
    const bad = await run(['verify', '--sample', '0', ...a.flags], { cwd: a.cwd });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--sample must be a percentage above 0 and at most 100, got '0'/);
  });

  it('a flipped byte is found within ceil(100/PCT) runs (exit 3) with the file named', async () => {
    const a = await setUp();
    const part = [...storedFiles(a.backupDir).keys()].filter((f) => f.includes('.part'))[3];
    flipByte(path.join(a.backupDir, part));
    let found = 0;
    for (let i = 1; i <= 3; i++) {
      const r = await run(['verify', '--sample', '34', '--json', ...a.flags], { cwd: a.cwd });
      const doc = parseJsonStdout<Doc>(r);
      if (doc.results.some((x: Doc) => x.file === part)) {
        found = i;
        expect(r.code, describeRun(r)).toBe(3);
        expect(doc.results.find((x: Doc) => x.file === part).problem).toBe(`${part}: checksum mismatch`);
        break;
      }
      expect(r.code).toBe(0);
    }
    expect(found, 'the damaged part was read within 3 runs').toBeGreaterThan(0);
  });
});

describe('drill --sample PCT', () => {
  it('2 drills at 50% restore disjoint halves of the tree covering every file, hash every stored file of the backup, and extrapolate the RTO', async () => {
    const a = await setUp();
    const restored = new Set<string>();
    let treeTotal = 0;
    for (let i = 1; i <= 2; i++) {
      const r = await run(['drill', '--type', 'full', '--sample', '50', '--keep', '--json', ...a.flags], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<Doc>(r);
      expect(doc.rto.extrapolated).toBe(true);
      expect(doc.rto.measured_ms).toBeGreaterThanOrEqual(doc.rto.sampled_ms);
      expect(doc.sample).toMatchObject({ percent: 50, tree_runs_per_cycle: 2, tree_offset: i - 1 });
      expect(doc.sample.coverage.runs_in_cycle).toBe(i);
      if (i === 2) expect(doc.sample.coverage.coverage_pct).toBe(100);
      treeTotal = doc.sample.tree_files_total;
      const root = path.join(doc.scratch, 'restore', 'storage');
      const walk = (d: string, rel = ''): void => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const r2 = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) walk(path.join(d, e.name), r2);
          else if (e.isFile()) {
            expect(restored.has(r2), `${r2} restored by both drills`).toBe(false);
            restored.add(r2);
          }
        }
      };
      walk(root);
      fs.rmSync(doc.scratch, { recursive: true });
    }
    expect(restored.size).toBe(treeTotal);
  });

  it('the tree is covered in ceil(100/PCT) drills even when the stored files all fit in one run (one unsplit archive)', async () => {
    const a = makeApp({ randomBytes: 512 * 1024 });
    apps.push(a);
    const c = await run(['create', '--type', 'storage', ...a.flags], { cwd: a.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const offsets: number[] = [];
    let restored = 0;
    let total = 0;
    for (let i = 1; i <= 3; i++) {
      const r = await run(['drill', '--type', 'storage', '--sample', '50', '--json', ...a.flags], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      const doc = parseJsonStdout<Doc>(r);
      offsets.push(doc.sample.tree_offset);
      if (i <= 2) restored += doc.sample.tree_files_restored;
      total = doc.sample.tree_files_total;
    }
    expect(offsets).toEqual([0, 1, 0]);
    expect(restored).toBe(total);
  });
});
