/**
 * Issue 21, items 7 and 8: the manual restore of docs/restore-by-hand.md, run literally with bash under
 * LANG=C.UTF-8, on a chain whose levels hold chained renames (log rotation: f.1 -> f.2, f -> f.1, a new
 * f, each >= 1 MiB so they are stored by reference), swaps of two large files, a three-way cycle, and
 * names that are not UTF-8 (renamed, deleted, unchanged). The result is compared with the original tree
 * byte for byte: names as bytes, contents, symlink targets, file modes.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, REPO, readJson, run, sh } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

let cwd: string;
beforeAll(() => {
  cwd = tempDir('vb-byhand-');
});
afterAll(() => rmrf(cwd));

const MiB = 1024 * 1024;
/** a path under `root` whose last part is the given bytes (names that are not UTF-8) */
const bytePath = (dir: string, name: Buffer) => Buffer.concat([Buffer.from(`${dir}/`), name]);
/**
 * A large file of a size no other has: a path whose new content has the size of its old one counts as
 * edited in place (read and stored), so a swap or rotation among equal sizes would not be a rename.
 */
let sizes = 0;
const big = (tag: string) => Buffer.concat([Buffer.from(`${tag}\n`), crypto.randomBytes(MiB + ++sizes * 4096)]);

/** Every entry under root keyed by its path's bytes (hex): type, mode, content hash or symlink target. */
function byteTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (abs: Buffer, rel: Buffer) => {
    for (const name of fs.readdirSync(abs, { encoding: 'buffer' })) {
      const a = Buffer.concat([abs, Buffer.from('/'), name]);
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const st = fs.lstatSync(a);
      const key = r.toString('hex');
      if (st.isSymbolicLink()) out.set(key, `l ${fs.readlinkSync(a, { encoding: 'buffer' }).toString('hex')}`);
      else if (st.isDirectory()) {
        out.set(key, `d ${(st.mode & 0o7777).toString(8)}`);
        walk(a, r);
      } else out.set(key, `f ${(st.mode & 0o7777).toString(8)} ${crypto.createHash('sha256').update(fs.readFileSync(a)).digest('hex')}`);
    }
  };
  walk(Buffer.from(root), Buffer.alloc(0));
  return out;
}

/** The differences, readable: path (as text, bytes that are not UTF-8 shown as U+FFFD) and what each side has. */
function differences(want: Map<string, string>, got: Map<string, string>): string[] {
  const out: string[] = [];
  for (const k of new Set([...want.keys(), ...got.keys()])) {
    if (want.get(k) !== got.get(k)) out.push(`${Buffer.from(k, 'hex').toString('utf8')}: want ${want.get(k) ?? 'nothing'}, got ${got.get(k) ?? 'nothing'}`);
  }
  return out;
}

const mv = (dir: string, from: string, to: string) => fs.renameSync(path.join(dir, from), path.join(dir, to));

describe('docs/restore-by-hand.md, run literally under LANG=C.UTF-8 (issue 21, items 7 and 8)', () => {
  it('restores chained renames, swaps, a cycle and names that are not UTF-8 byte for byte', async () => {
    const root = path.join(cwd, 'app');
    const storage = path.join(root, 'storage');
    const backupDir = path.join(root, 'backups');
    const flags = ['--storage-path', storage, '--backup-dir', backupDir];
    const logs = path.join(storage, 'logs');
    const videos = path.join(storage, 'videos');
    const odd = path.join(storage, 'odd');
    for (const d of [logs, videos, odd]) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(logs, 'app.log.1'), big('log one'));
    fs.writeFileSync(path.join(logs, 'app.log'), big('log zero'));
    for (const n of ['a.mp4', 'b.mp4', 'x.mp4', 'y.mp4', 'z.mp4']) fs.writeFileSync(path.join(videos, n), big(n));
    fs.chmodSync(path.join(videos, 'b.mp4'), 0o600);
    // names that are not UTF-8: one large file that is renamed (a copy record), one deleted, one unchanged;
    // the unchanged one sorts between them so that a dropped record shifts the pairs of the copy step
    fs.writeFileSync(bytePath(odd, Buffer.from('caf\xe9 big.bin', 'latin1')), big('latin-1 big'));
    fs.writeFileSync(bytePath(odd, Buffer.from('gone \xff.txt', 'latin1')), 'to be deleted');
    fs.writeFileSync(bytePath(odd, Buffer.from('kept \xfe.txt', 'latin1')), 'unchanged, not UTF-8');
    fs.writeFileSync(path.join(storage, 'plain.txt'), 'plain\n');
    fs.symlinkSync(Buffer.from('odd/caf\xe9 big.bin', 'latin1') as unknown as string, path.join(storage, 'link'));

    const create = async () => {
      const r = await run(['create', '--type', 'storage', '--json', ...flags], { cwd: root });
      expect(r.code, describeRun(r)).toBe(0);
      const id = parseJsonStdout<{ id: string }>(r).id;
      return { id, sidecar: readJson<Record<string, any>>(path.join(backupDir, 'storage', `storage_backup_${id}.json`)) };
    };
    await create();

    // level 1: log rotation, a swap of two large files, a non-UTF-8 rename into a new directory, a deletion
    mv(logs, 'app.log.1', 'app.log.2');
    mv(logs, 'app.log', 'app.log.1');
    fs.writeFileSync(path.join(logs, 'app.log'), big('log new 1'));
    mv(videos, 'a.mp4', 'swap.tmp');
    mv(videos, 'b.mp4', 'a.mp4');
    mv(videos, 'swap.tmp', 'b.mp4');
    fs.mkdirSync(path.join(odd, 'moved'));
    fs.renameSync(bytePath(odd, Buffer.from('caf\xe9 big.bin', 'latin1')), bytePath(path.join(odd, 'moved'), Buffer.from('\xe9t\xe9.bin', 'latin1')));
    fs.rmSync(bytePath(odd, Buffer.from('gone \xff.txt', 'latin1')));
    const l1 = await create();
    expect(l1.sidecar.level).toBe(1);
    // the large files went by reference: the copy step is what puts them in place
    expect(l1.sidecar.content_bytes).toBeLessThan(2 * MiB);

    // level 2: rotate again (three deep now), a three-way cycle x -> y -> z -> x, and swap back
    mv(logs, 'app.log.2', 'app.log.3');
    mv(logs, 'app.log.1', 'app.log.2');
    mv(logs, 'app.log', 'app.log.1');
    fs.writeFileSync(path.join(logs, 'app.log'), big('log new 2'));
    mv(videos, 'x.mp4', 'cycle.tmp');
    mv(videos, 'z.mp4', 'x.mp4');
    mv(videos, 'y.mp4', 'z.mp4');
    mv(videos, 'cycle.tmp', 'y.mp4');
    mv(videos, 'b.mp4', 'swap.tmp');
    mv(videos, 'a.mp4', 'b.mp4');
    mv(videos, 'swap.tmp', 'a.mp4');
    // type changes on the way to a copy: a file replaced by a directory that receives a renamed file,
    // a directory (holding a renamed file's source) replaced by a renamed file
    fs.rmSync(path.join(storage, 'plain.txt'));
    fs.mkdirSync(path.join(storage, 'plain.txt'));
    mv(videos, 'y.mp4', '../plain.txt/now inside.mp4');
    fs.renameSync(bytePath(path.join(odd, 'moved'), Buffer.from('\xe9t\xe9.bin', 'latin1')), path.join(storage, 'moved.bin'));
    fs.rmdirSync(path.join(odd, 'moved'));
    mv(storage, 'moved.bin', 'odd/moved');
    const last = await create();
    expect(last.sidecar.level).toBe(2);
    expect(last.sidecar.content_bytes).toBeLessThan(2 * MiB);
    const want = byteTree(storage);

    const page = fs.readFileSync(path.join(REPO, 'docs', 'restore-by-hand.md'), 'utf8');
    const section = page.slice(page.indexOf('# Restoring by hand'));
    const script = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
    expect(script, 'docs/restore-by-hand.md shows the manual restore in a sh block').toBeTruthy();
    const target = path.join(cwd, 'by-hand');
    fs.mkdirSync(target);
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: cwd, LANG: 'C.UTF-8', BACKUPS: path.join(backupDir, 'storage'), ID: last.id };
    const r = sh('bash', ['-euo', 'pipefail', '-c', script!], { cwd: target, env, allowFail: true });
    expect(r.code, r.stderr).toBe(0);
    expect(differences(want, byteTree(path.join(target, 'storage')))).toEqual([]);
    // nothing but the tree is left in the directory it ran in
    expect(fs.readdirSync(target)).toEqual(['storage']);
  });
});
