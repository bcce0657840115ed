/**
 * Issue 29 item 8, one size per backup everywhere: list, verify, stats and rotate give the same size for
 * one full backup (rotate used to show its sidecar's 341 B), JSON says `size_bytes` and `age_seconds`,
 * and the per-type metric does not count a full backup's components twice; a full backup's id is its
 * created_at second.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, start } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

interface Listed {
  type: string;
  id: string;
  size_bytes: number;
  age_seconds: number;
}

describe('one size for one backup', () => {
  it('list, verify, stats and rotate agree on a full backup; the metric sums each byte once', async () => {
    const app = makeApp({ randomBytes: 64 * 1024, events: 50 });
    apps.push(app.cwd);
    const metrics = path.join(app.cwd, 'vb.prom');
    const c = await run(['create', '--type', 'full', '--metrics-file', metrics, ...app.flags], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);

    const list = parseJsonStdout<Listed[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd }));
    const full = list.find((b) => b.type === 'full')!;
    const db = list.find((b) => b.type === 'database')!;
    const st = list.find((b) => b.type === 'storage')!;
    expect(full.size_bytes).toBe(db.size_bytes + st.size_bytes);
    for (const b of list) {
      expect(b.age_seconds).toBeGreaterThanOrEqual(0);
      expect(Object.keys(b)).not.toContain('size');
    }

    const verify = parseJsonStdout<{ results: { type: string; size_bytes: number }[] }>(await run(['verify', '--all', '--json', ...app.flags], { cwd: app.cwd }));
    expect(verify.results.find((r) => r.type === 'full')?.size_bytes).toBe(full.size_bytes);

    const stats = parseJsonStdout<{ types: { type: string; size_bytes: number }[] }>(await run(['stats', '--json', ...app.flags], { cwd: app.cwd }));
    expect(stats.types.find((t) => t.type === 'full')?.size_bytes).toBe(full.size_bytes);

    const rotate = await run(['rotate', '--max-backups', '5', '--dry-run', '--json', ...app.flags], { cwd: app.cwd });
    expect(rotate.code, describeRun(rotate)).toBe(0);
    const kept = parseJsonStdout<{ kept: Record<string, unknown>[] }>(rotate).kept;
    const keptFull = kept.find((k) => k.type === 'full')!;
    expect(keptFull.size_bytes).toBe(full.size_bytes);
    // what removing it would free is its sidecar, under its own name (not a second `bytes` for a size)
    expect(keptFull.disk_bytes).toBeLessThan(4096);
    expect(Object.keys(keptFull)).not.toContain('bytes');
    const human = await run(['rotate', '--max-backups', '5', '--dry-run', ...app.flags], { cwd: app.cwd });
    const fullRow = human.stdout.split('\n').find((l) => l.includes('full'))!;
    const listRow = (await run(['list', ...app.flags], { cwd: app.cwd })).stdout.split('\n').find((l) => l.includes('full'))!;
    const sizeIn = (row: string) => row.match(/(\d+(?:\.\d+)? (?:B|KiB|MiB))/)?.[1];
    expect(sizeIn(fullRow)).toBe(sizeIn(listRow));

    // summed over types, the metric is the backups' bytes once: database + storage (+ the full's sidecar)
    const prom = fs.readFileSync(metrics, 'utf8');
    const perType = [...prom.matchAll(/^vertex_backup_backups_bytes\{type="(\w+)"\} (\d+)/gm)].map((m) => [m[1], Number(m[2])] as const);
    const sum = perType.reduce((n, [, v]) => n + v, 0);
    expect(sum).toBeLessThan(db.size_bytes + st.size_bytes + 4096);
    expect(sum).toBeGreaterThanOrEqual(db.size_bytes + st.size_bytes);
  });

  it('JSON says age_seconds for an age: check --json', async () => {
    const app = makeApp({ minimalStorage: true, events: 10 });
    apps.push(app.cwd);
    expect((await run(['create', ...app.flags], { cwd: app.cwd })).code).toBe(0);
    const check = parseJsonStdout<{ max_age_seconds: number; types: Record<string, unknown>[] }>(await run(['check', '--json', '--max-age', '2h', ...app.flags], { cwd: app.cwd }));
    expect(check.max_age_seconds).toBe(7200);
    for (const t of check.types) {
      expect(t.age_seconds).toEqual(expect.any(Number));
      expect(Object.keys(t)).not.toContain('age_ms');
    }
  });

  it("a full backup's id is its created_at second, however long the checks before the backup take", async () => {
    const app = makeApp({ minimalStorage: true, events: 10 });
    apps.push(app.cwd);
    // the run stops itself after its checks and the lock, before it names the backup; 1.5 s later it goes on
    const { child, done } = start(['create', '--type', 'full', '--json', ...app.flags], { cwd: app.cwd, env: { VERTEX_BACKUP_FAULT_POINT: 'create-locked' } });
    const stopped = () => {
      try {
        return fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 300 && !stopped(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(stopped()).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGCONT');
    const r = await done;
    expect(r.code, describeRun(r)).toBe(0);
    const list = parseJsonStdout<(Listed & { created_at: string })[]>(await run(['list', '--json', ...app.flags], { cwd: app.cwd }));
    const full = list.find((b) => b.type === 'full')!;
    const second = full.created_at.slice(0, 19).replace(/[-:]/g, '').replace('T', '_');
    expect(full.id).toBe(second);
  });

  it('a chain link: verify shows the size list shows (what it read with the chain beside it)', async () => {
    const app = makeApp({ randomBytes: 64 * 1024, events: 20 });
    apps.push(app.cwd);
    expect((await run(['create', '--type', 'storage', ...app.flags], { cwd: app.cwd })).code).toBe(0);
    fs.writeFileSync(path.join(app.storagePath, 'new-upload.txt'), 'a new upload\n');
    const second = await run(['create', '--type', 'storage', '--json', ...app.flags], { cwd: app.cwd });
    expect(second.code, describeRun(second)).toBe(0);
    const id = parseJsonStdout<{ id: string }>(second).id;
    const row = (out: string) => out.split('\n').find((l) => l.includes(id))!;
    const sizeIn = (r: string) => r.match(/(\d+(?:\.\d+)? (?:B|KiB|MiB))/)?.[1];
    const listed = sizeIn(row((await run(['list', ...app.flags], { cwd: app.cwd })).stdout));
    const verified = row((await run(['verify', '--all', ...app.flags], { cwd: app.cwd })).stdout);
    expect(listed).toBeDefined();
    expect(sizeIn(verified)).toBe(listed);
    expect(verified).toMatch(/read with its chain/);
  });
});
