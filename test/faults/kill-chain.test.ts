/**
 * Issue 15: a crash (SIGKILL) at any point of an incremental storage run, or of the rotation of a
 * chain, leaves every listed backup restorable. Real processes, real kills; then the catalog is judged
 * the way the next run and the operator see it: everything `list` calls ok verifies (its whole chain),
 * the next run works, and the newest backup restores to the tree of its time.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, json, makeMedia, rmrf, rng, show, sleep, startCli, tempDir, tempFilesIn, treeDigest, trials } from '../helpers/faults.js';

const CREATE_TRIALS = trials(3, 20);
const ROTATE_TRIALS = trials(2, 10);

let cwd: string;
let flags: string[];
let backupDir: string;
let storagePath: string;
const R = rng('kill-chain');

beforeAll(() => {
  cwd = tempDir('vb-kill-chain-');
  storagePath = path.join(cwd, 'storage');
  backupDir = path.join(cwd, 'backups');
  makeMedia(storagePath, { files: 300, bytes: 30 * 1024 * 1024 });
  flags = ['--storage-path', storagePath, '--backup-dir', backupDir];
});

afterAll(() => rmrf(cwd));

interface ListEntry {
  type: string;
  id: string;
  status: string;
  reason?: string;
  level?: number;
}

async function list(): Promise<ListEntry[]> {
  const r = await cli(['list', '--json', ...flags], { cwd });
  expect(r.code, show(r)).toBe(0);
  return json(r) as ListEntry[];
}

/** Some files rewritten (new content, so the next level N has real work), one added, one removed. */
function mutate(t: number): void {
  const files = fs.readdirSync(storagePath, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.bin')).sort();
  for (let i = 0; i < 12; i++) {
    const f = path.join(storagePath, files[R.int(0, files.length - 1)]!);
    fs.writeFileSync(f, Buffer.alloc(R.int(1, 2 * 1024 * 1024), t + i));
  }
  fs.writeFileSync(path.join(storagePath, `added-${t}.txt`), `trial ${t}\n`);
  fs.rmSync(path.join(storagePath, files[R.int(0, files.length - 1)]!), { force: true });
}

/** Every backup list calls ok verifies, chain included; none is damaged. */
async function everyOkVerifies(ctx: string): Promise<ListEntry[]> {
  const entries = await list();
  for (const e of entries) {
    expect(e.status, `${ctx}: ${e.type} ${e.id}: ${e.reason}`).not.toBe('damaged');
    if (e.status !== 'ok') continue;
    const v = await cli(['verify', e.id, '--json', ...flags], { cwd });
    expect(v.code, `${ctx}: storage ${e.id} (level ${e.level}) is listed ok but does not verify\n${show(v)}`).toBe(0);
  }
  return entries;
}

describe('SIGKILL during incremental storage runs and the rotation of chains', () => {
  it(`${CREATE_TRIALS} kills of level N runs, ${ROTATE_TRIALS} of rotations: every listed backup verifies and the newest restores`, async () => {
    const base = await cli(['create', '--type', 'storage', '--json', ...flags], { cwd });
    expect(base.code, show(base)).toBe(0);
    const stats = { during: 0, exitedBeforeKill: 0 };

    for (let t = 0; t < CREATE_TRIALS; t++) {
      mutate(t);
      // time an uninterrupted level N of a like change, then kill a fresh one somewhere inside that time
      const timing = await cli(['create', '--type', 'storage', '--json', ...flags], { cwd });
      expect(timing.code, show(timing)).toBe(0);
      mutate(t + 100);
      const delay = R.int(20, Math.round(timing.ms * 1.1));
      const run = startCli(['create', '--type', 'storage', ...flags], { cwd });
      await sleep(delay);
      run.child.kill('SIGKILL');
      const r = await run.done;
      if (r.signal === 'SIGKILL') stats.during++;
      else stats.exitedBeforeKill++;
      const ctx = `create trial ${t}, SIGKILL after ${delay} of ~${timing.ms} ms (seed ${R.seed})`;
      await everyOkVerifies(ctx);

      // the next run needs no clean-up and its backup restores to the tree as it is now
      const next = await cli(['create', '--type', 'storage', '--json', ...flags], { cwd });
      expect(next.code, `${ctx}: the next create\n${show(next)}`).toBe(0);
      expect(tempFilesIn(backupDir), ctx).toEqual([]);
      const target = path.join(cwd, `restored-${t}`);
      const rs = await cli(['restore', json(next).id, '--target', target, '--yes', ...flags], { cwd });
      expect(rs.code, `${ctx}: restore of the next backup\n${show(rs)}`).toBe(0);
      expect(treeDigest(path.join(target, 'storage')), ctx).toEqual(treeDigest(storagePath));
      rmrf(target);
    }

    for (let t = 0; t < ROTATE_TRIALS; t++) {
      mutate(200 + t);
      expect((await cli(['create', '--type', 'storage', ...flags], { cwd })).code).toBe(0);
      const want = treeDigest(storagePath);
      const newest = (await list()).find((e) => e.status === 'ok')!;
      const delay = R.int(5, 120);
      const run = startCli(['rotate', '--max-backups', '1', ...flags], { cwd });
      await sleep(delay);
      run.child.kill('SIGKILL');
      await run.done;
      const ctx = `rotate trial ${t}, SIGKILL after ${delay} ms (seed ${R.seed})`;
      const entries = await everyOkVerifies(ctx);
      expect(entries.find((e) => e.id === newest.id)?.status, ctx).toBe('ok');
      const target = path.join(cwd, `rotated-${t}`);
      const rs = await cli(['restore', newest.id, '--target', target, '--yes', ...flags], { cwd });
      expect(rs.code, `${ctx}: restore of the newest\n${show(rs)}`).toBe(0);
      expect(treeDigest(path.join(target, 'storage')), ctx).toEqual(want);
      rmrf(target);
      // a rotation run to the end afterwards leaves only ok backups, and the chain the newest needs
      const rot = await cli(['rotate', '--max-backups', '1', '--json', ...flags], { cwd });
      expect(rot.code, `${ctx}: rotate\n${show(rot)}`).toBe(0);
      const after = await everyOkVerifies(ctx);
      expect(after.filter((e) => e.status !== 'ok').map((e) => `${e.id} ${e.status}`), ctx).toEqual([]);
    }
    console.log(`[faults] level N kills: ${JSON.stringify(stats)}`);
    expect(stats.during).toBeGreaterThan(0);
  }, 900_000);
});
