/**
 * Promise: disk space is checked before writing (exit 5), and a failure mid-write removes the partial
 * files and leaves earlier backups untouched.
 *
 * Method: the backup directory (or the live storage) is a small filesystem mounted for the test:
 * `mount -t tmpfs -o size=…` (we run as root), else `truncate` + `mkfs.ext4` + `mount -o loop`
 * (helpers.mountSmallFs). The mid-write case lets the estimate pass and then a filler process fills
 * the same filesystem the moment the archive's temp file appears.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fileHash, json, makeCounterDb, makeMedia, mountSmallFs, rmrf, show, STACK, startCli, tempDir, tempFilesIn, treeDigest, trials } from '../helpers/faults.js';

const MIDWRITE_TRIALS = trials(2, 6);
let cwd: string;
let dbPath: string;
let storagePath: string;
let mnt: string;
let fsm: ReturnType<typeof mountSmallFs>;

beforeAll(() => {
  cwd = tempDir('vb-full-');
  dbPath = path.join(cwd, 'app.db');
  storagePath = path.join(cwd, 'storage');
  makeCounterDb(dbPath, { journalMode: 'wal', fillerMb: 4, counter: 20 });
  makeMedia(storagePath, { files: 120, bytes: 90 * 1024 * 1024 });
  mnt = path.join(cwd, 'mnt');
  fsm = mountSmallFs(mnt, 130);
});
afterAll(() => {
  fsm?.unmount();
  rmrf(cwd);
});

const flagsFor = (backupDir: string) => ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', backupDir];

/** Waits for the first temp file in `dir`, then writes into `fill` until ENOSPC; holds it until killed. */
const FILLER_JS = `
const fs = require('fs'), path = require('path');
const [dir, fill] = process.argv.slice(1);
const t0 = Date.now();
while (Date.now() - t0 < 30000) {
  let names = [];
  try { names = fs.readdirSync(dir); } catch {}
  if (names.some((n) => n.endsWith('.tmp'))) break;
}
const fd = fs.openSync(fill, 'w');
const buf = Buffer.alloc(1 << 20, 1);
try { for (;;) fs.writeSync(fd, buf); } catch (e) { fs.writeFileSync(fill + '.done', e.code); }
setInterval(() => {}, 1000);
`;

describe('disk full', () => {
  it('a backup that cannot fit: exit 5 with the numbers, nothing written, earlier backups still verify', async (ctx) => {
    if (!fsm) return ctx.skip('cannot mount a small filesystem (tmpfs or a loop image: needs root)');
    const backupDir = path.join(mnt, 'b1');
    const first = await cli(['create', '--type', 'database', '--json', ...flagsFor(backupDir)], { cwd, timeoutMs: 40_000 });
    expect(first.code, show(first)).toBe(0);
    const before = treeDigest(backupDir, { skip: (r) => r === 'backup.log' || r === 'status.json' });
    // storage (90 MiB) + a 60 MiB filler do not fit in 130 MiB
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(60 << 20));
    const r = await cli(['create', '--type', 'full', ...flagsFor(backupDir)], { cwd, timeoutMs: 40_000 });
    expect(r.code, show(r)).toBe(5);
    expect(r.stderr).toMatch(/not enough free space.*needs about.*free/);
    expect(r.stderr).not.toMatch(STACK);
    expect(treeDigest(backupDir, { skip: (x) => x === 'backup.log' || x === 'status.json' })).toEqual(before);
    const v = await cli(['verify', '--all', ...flagsFor(backupDir)], { cwd });
    expect(v.code, show(v)).toBe(0);
    fs.rmSync(path.join(mnt, 'filler'));
    rmrf(backupDir);
  });

  it(`${MIDWRITE_TRIALS} runs where the estimate passes and the disk fills during the write: exit 5 or 1, a clear message, no partial file, earlier backups verify`, async (ctx) => {
    if (!fsm) return ctx.skip('cannot mount a small filesystem (tmpfs or a loop image: needs root)');
    const backupDir = path.join(mnt, 'b2');
    const first = await cli(['create', '--type', 'database', '--json', ...flagsFor(backupDir)], { cwd, timeoutMs: 40_000 });
    expect(first.code, show(first)).toBe(0);
    const firstId = json(first).id;
    for (let t = 0; t < MIDWRITE_TRIALS; t++) {
      const type = t % 2 === 0 ? 'storage' : 'full';
      const fill = path.join(mnt, `filler-${t}`);
      fs.mkdirSync(path.join(backupDir, 'storage'), { recursive: true });
      const filler = spawn(process.execPath, ['-e', FILLER_JS, path.join(backupDir, 'storage'), fill], { stdio: 'ignore' });
      const fillerClosed = new Promise((res) => filler.on('close', res));
      const run = startCli(['create', '--type', type, '--json', ...flagsFor(backupDir)], { cwd, timeoutMs: 40_000 });
      const r = await run.done;
      filler.kill('SIGKILL');
      await fillerClosed;
      const ctxs = `trial ${t} (--type ${type})`;
      console.log(`[faults] disk-full ${ctxs}: exit ${r.code} in ${r.ms} ms`);
      expect(fs.existsSync(`${fill}.done`), `${ctxs}: the filler never filled the disk\n${show(r)}`).toBe(true);
      expect([1, 5], `${ctxs}\n${show(r)}`).toContain(r.code);
      const msg = json(r);
      const text = JSON.stringify(msg);
      // the mid-write path, not the estimate: ENOSPC while writing
      expect(text, ctxs).toMatch(/no space left/i);
      expect(r.stderr, ctxs).not.toMatch(STACK);
      expect(tempFilesIn(backupDir), `${ctxs}: partial files left`).toEqual([]);
      // no storage archive without a sidecar: nothing incomplete or damaged is listed
      const l = json(await cli(['list', '--json', ...flagsFor(backupDir)], { cwd })) as { type: string; id: string; status: string }[];
      expect(l.filter((e) => e.status === 'incomplete' || e.status === 'damaged').map((e) => `${e.type} ${e.id} ${e.status}`), ctxs).toEqual([]);
      expect(l.some((e) => e.type === 'storage'), `${ctxs}: a storage backup appeared`).toBe(false);
      fs.rmSync(fill);
      fs.rmSync(`${fill}.done`);
      const v = await cli(['verify', firstId, ...flagsFor(backupDir)], { cwd });
      expect(v.code, `${ctxs}\n${show(v)}`).toBe(0);
      // a full run keeps its good half (database) as a partial full backup, which verifies as such
      if (type === 'full' && msg.id) expect(l.find((e) => e.type === 'full' && e.id === msg.id)?.status, ctxs).toBe('partial');
    }
    rmrf(backupDir);
  });

  it('restore onto a full disk leaves the current data untouched', async (ctx) => {
    if (!fsm) return ctx.skip('cannot mount a small filesystem (tmpfs or a loop image: needs root)');
    // backups on the big disk; the live storage and database on the small one
    const backupDir = path.join(cwd, 'backups-big');
    const made = await cli(['create', '--type', 'full', '--json', ...flagsFor(backupDir)], { cwd });
    expect(made.code, show(made)).toBe(0);
    const id = json(made).id;
    const live = path.join(mnt, 'live');
    fs.mkdirSync(live);
    fs.cpSync(dbPath, path.join(live, 'app.db'));
    makeMedia(path.join(live, 'storage'), { files: 10, bytes: 5 << 20, seed: 99 });
    const flags = ['--db-path', path.join(live, 'app.db'), '--storage-path', path.join(live, 'storage'), '--backup-dir', backupDir];
    const before = { tree: treeDigest(path.join(live, 'storage')), db: fileHash(path.join(live, 'app.db')) };
    // 90 MiB archive into ~60 MiB free, with the filler taking the rest
    fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(60 << 20));
    const listing = () => fs.readdirSync(live).sort();
    const names = listing();
    const r = await cli(['restore', id, '--yes', ...flags], { cwd });
    expect([1, 3, 5], show(r)).toContain(r.code);
    expect(r.stderr).toMatch(/space|more than/i);
    expect(r.stderr).not.toMatch(STACK);
    expect(treeDigest(path.join(live, 'storage'))).toEqual(before.tree);
    expect(listing().filter((n) => !n.startsWith('app.db.pre-restore-') && !names.includes(n)), 'staging left behind').toEqual([]);
    // the database was restored first (it fit), and the previous one was copied aside whole
    const aside = listing().filter((n) => n.startsWith('app.db.pre-restore-'));
    if (fileHash(path.join(live, 'app.db')) !== before.db) expect(aside.length).toBe(1);

    // the same with the disk filling during the unpack (the free-space guard passes)
    fs.rmSync(path.join(mnt, 'filler'));
    for (const n of aside) fs.rmSync(path.join(live, n));
    const fill = path.join(mnt, 'filler2');
    const filler = spawn(process.execPath, ['-e', FILLER_JS.replace("n.endsWith('.tmp')", "n.includes('.restore-')"), live, fill], { stdio: 'ignore' });
    const fillerClosed = new Promise((res) => filler.on('close', res));
    const r2 = await cli(['restore', id, '--yes', '--no-verify', ...flags], { cwd });
    filler.kill('SIGKILL');
    await fillerClosed;
    expect([1, 3, 5], show(r2)).toContain(r2.code);
    expect(r2.stderr).toMatch(/space/i);
    expect(r2.stderr).not.toMatch(STACK);
    expect(treeDigest(path.join(live, 'storage'))).toEqual(before.tree);
    expect(fs.readdirSync(live).filter((n) => n.includes('.restore-')), 'staging left behind').toEqual([]);
    fs.rmSync(fill, { force: true });
    fs.rmSync(`${fill}.done`, { force: true });
  });
});
