/**
 * Issue 15: incremental storage backups. Level 0 holds every file, level N what changed since the
 * previous backup; each is a plain tar archive plus a file manifest. Run through the built binary;
 * archives read back with GNU tar, the manual restore run literally as docs/restore-by-hand.md writes it.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { BIN, describeRun, parseJsonStdout, readJson, run, sh } from '../helpers/cli.js';
import { flipByte, makeStorage, rmrf, snapshot, tempDir } from '../helpers/fixtures.js';

let cwd: string;
beforeAll(() => {
  cwd = tempDir('vb-incr-');
});
afterAll(() => rmrf(cwd));

type Sidecar = Record<string, any>;

function app(name: string) {
  const root = path.join(cwd, name);
  const storage = path.join(root, 'storage');
  makeStorage(storage, { randomBytes: 512 * 1024 });
  const backupDir = path.join(root, 'backups');
  return { root, storage, backupDir, flags: ['--storage-path', storage, '--backup-dir', backupDir] };
}

type App = ReturnType<typeof app>;

async function create(a: App, ...extra: string[]): Promise<{ id: string; sidecar: Sidecar; archive: string }> {
  const r = await run(['create', '--type', 'storage', '--json', ...extra, ...a.flags], { cwd: a.root });
  expect(r.code, describeRun(r)).toBe(0);
  const id = parseJsonStdout<{ id: string }>(r).id;
  const sidecar = readJson<Sidecar>(path.join(a.backupDir, 'storage', `storage_backup_${id}.json`));
  return { id, sidecar, archive: path.join(a.backupDir, 'storage', sidecar.backup_path) };
}

const tarNames = (archive: string) => sh('tar', ['-tzf', archive]).stdout.split('\n').filter(Boolean).map((n) => n.replace(/\/$/, ''));

async function restoreTo(a: App, id: string, target: string, ...extra: string[]) {
  const r = await run(['restore', id, '--target', target, '--yes', ...extra, ...a.flags], { cwd: a.root });
  expect(r.code, describeRun(r)).toBe(0);
  return r;
}

/** The tree as a restore must reproduce it; directory times are compared where the writer controls them. */
const tree = (root: string, dirTimes = true) => snapshot(root, { dirTimes, exclude: (rel) => rel.includes('\ufffd') });
/** The file with a name that is not UTF-8 (snapshot reads names as text, so it is checked here). */
const latin1File = (root: string) => {
  const name = fs.readdirSync(root, { encoding: 'buffer' }).find((n) => n.includes(0xe9));
  return name && fs.readFileSync(Buffer.concat([Buffer.from(`${root}/`), name])).toString();
};

describe('level 0 and level N storage backups (item 1)', () => {
  it('an unchanged tree gives a level 1 archive holding nothing; a change gives a level 2 holding only it; each backup restores its own tree', async () => {
    const a = app('chain');
    // owners come back when restoring as root (directories from the manifest, files from the archives)
    const asRoot = process.getuid?.() === 0;
    if (asRoot) fs.chownSync(path.join(a.storage, 'videos'), 33, 33);
    const b0 = await create(a);
    expect(b0.sidecar).toMatchObject({ level: 0, base: b0.id, references: [b0.id] });
    expect(b0.sidecar.previous).toBeUndefined();
    const t0 = tree(a.storage);

    const b1 = await create(a);
    expect(b1.sidecar).toMatchObject({ level: 1, base: b0.id, previous: b0.id, file_count: 0, content_bytes: 0, chain: [b0.id, b1.id], references: [b0.id, b1.id] });
    expect(tarNames(b1.archive)).toEqual([]);
    // its manifest holds what changed: nothing (the file list is the merge of the chain's manifests)
    expect(b1.sidecar.manifest.entries).toBe(0);

    fs.writeFileSync(path.join(a.storage, 'images', 'new.jpg'), 'new photo');
    fs.appendFileSync(path.join(a.storage, 'markers', 'marker.patt'), 'more\n');
    fs.rmSync(path.join(a.storage, 'notes.tmp'));
    const t2 = tree(a.storage);
    const b2 = await create(a);
    expect(b2.sidecar).toMatchObject({ level: 2, base: b0.id, previous: b1.id, file_count: 2, chain: [b0.id, b1.id, b2.id], references: [b0.id, b1.id, b2.id] });
    // the changed records (2 files, 3 directories) and one deletion
    expect(b2.sidecar.manifest.entries).toBe(6);
    const gone = sh('bash', ['-c', `zcat '${path.join(a.backupDir, 'storage', b2.sidecar.manifest.file)}' | grep -z '^{"x"' | tr '\\0' '\\n'`]).stdout;
    expect(gone).toBe('{"x":1,"t":"f"}\tstorage/notes.tmp\n');
    // the changed files, and the directories whose entries changed (their times come back right)
    expect(tarNames(b2.archive).sort()).toEqual(['storage', 'storage/images', 'storage/images/new.jpg', 'storage/markers', 'storage/markers/marker.patt']);

    for (const [id, want] of [
      [b0.id, t0],
      [b1.id, t0],
      [b2.id, t2],
    ] as const) {
      const target = path.join(a.root, `r-${id}`);
      await restoreTo(a, id, target);
      expect(tree(path.join(target, 'storage')), `restore of ${id}`).toEqual(want);
      if (asRoot) expect(fs.statSync(path.join(target, 'storage', 'videos')).uid, `owner after the restore of ${id}`).toBe(33);
    }
  });

  it('--full forces a level 0, and so does a base older than --full-every', async () => {
    const a = app('full');
    await create(a);
    expect((await create(a)).sidecar.level).toBe(1);
    const forced = await create(a, '--full');
    expect(forced.sidecar).toMatchObject({ level: 0, base: forced.id, references: [forced.id] });
    expect(tarNames(forced.archive)).toContain('storage/videos/clip 01.mp4');
    expect((await create(a, '--full-every', '0s')).sidecar.level).toBe(0);
    const bad = await run(['create', '--type', 'storage', '--full-every', 'soon', ...a.flags], { cwd: a.root });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--full-every: cannot read "soon" as a duration/);
  });

  it('a file rewritten with its size and mtime put back is still found (ctime); --reread hashes every file and packs nothing unchanged', async () => {
    const a = app('reread');
    await create(a);
    const f = path.join(a.storage, 'markers', 'marker.patt');
    const st = fs.statSync(f);
    const data = fs.readFileSync(f);
    data[0] ^= 0xff;
    // same inode, size and mtime: only the content and the ctime (which no program can set back) differ
    fs.writeFileSync(f, data);
    fs.utimesSync(f, st.atime, st.mtime);
    const b1 = await create(a);
    expect(tarNames(b1.archive)).toContain('storage/markers/marker.patt');
    // nothing changed since: --reread hashes every file and still packs nothing
    const b2 = await create(a, '--reread');
    expect(b2.sidecar.level).toBe(2);
    expect(tarNames(b2.archive)).toEqual([]);
  });
});

describe('the chain a backup needs (item 1: verify, list, restore)', () => {
  it('a damaged base makes every backup that needs it damaged: verify names it (exit 3), list says so, restore refuses', async () => {
    const a = app('damaged-base');
    const b0 = await create(a);
    fs.writeFileSync(path.join(a.storage, 'added.txt'), 'x');
    const b1 = await create(a);
    const ok = await run(['verify', b1.id, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(ok.code, describeRun(ok)).toBe(0);
    flipByte(b0.archive, 4000);
    const v = await run(['verify', b1.id, '--json', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout).toContain(`needs the archive of storage backup ${b0.id}`);
    fs.rmSync(b0.archive);
    const l = parseJsonStdout<{ id: string; status: string; reason?: string }[]>(await run(['list', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    expect(l.find((e) => e.id === b1.id)).toMatchObject({ status: 'damaged', reason: expect.stringContaining(b0.id) });
    const r = await run(['restore', b1.id, '--target', path.join(a.root, 'r'), '--yes', ...a.flags], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(3);
    expect(fs.existsSync(path.join(a.root, 'r', 'storage'))).toBe(false);
  });

  it('a damaged manifest is found by verify, and the next backup starts a new chain instead of trusting it', async () => {
    const a = app('damaged-manifest');
    const b0 = await create(a);
    flipByte(path.join(a.backupDir, 'storage', b0.sidecar.manifest.file), 20);
    const v = await run(['verify', b0.id, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toMatch(/manifest\.gz/);
    const b1 = await create(a);
    expect(b1.sidecar.level).toBe(0);
    // a missing manifest: the backup is damaged in the listing, whatever its archive says
    fs.rmSync(path.join(a.backupDir, 'storage', b0.sidecar.manifest.file));
    const l = parseJsonStdout<{ id: string; status: string; reason?: string }[]>(await run(['list', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    expect(l.find((e) => e.id === b0.id)).toMatchObject({ status: 'damaged', reason: expect.stringContaining('manifest.gz') });
  });
});

describe('a level N file list is the merge of its chain (item 1 of the second round)', () => {
  it('a damaged or missing manifest in the middle of a chain: verify and list name it, restore refuses, the next run starts a new chain', async () => {
    const a = app('mid-manifest');
    const b0 = await create(a);
    fs.writeFileSync(path.join(a.storage, 'images', 'one.jpg'), 'one');
    const b1 = await create(a);
    fs.writeFileSync(path.join(a.storage, 'images', 'two.jpg'), 'two');
    const b2 = await create(a);
    expect(b2.sidecar.chain).toEqual([b0.id, b1.id, b2.id]);
    // ls of b2 holds what b1's manifest added
    const ls = parseJsonStdout<{ entries: { path: string; archive: string }[] }>(await run(['ls', b2.id, 'images', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    expect(ls.entries.filter((e) => /one|two/.test(e.path))).toEqual([expect.objectContaining({ path: 'images/one.jpg', archive: b1.id }), expect.objectContaining({ path: 'images/two.jpg', archive: b2.id })]);
    const m1 = path.join(a.backupDir, 'storage', b1.sidecar.manifest.file);
    flipByte(m1, 12);
    const v = await run(['verify', b2.id, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout).toContain(b1.sidecar.manifest.file);
    const r = await run(['restore', b2.id, '--target', path.join(a.root, 'r'), '--yes', ...a.flags], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(3);
    const b3 = await create(a);
    expect(b3.sidecar.level).toBe(0);
    fs.rmSync(m1);
    const l = parseJsonStdout<{ id: string; status: string; reason?: string }[]>(await run(['list', '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    expect(l.find((e) => e.id === b2.id)).toMatchObject({ status: 'damaged', reason: expect.stringContaining(b1.id) });
  });
});

describe('renamed or copied files are referenced, not stored again (item 2 of the second round)', () => {
  it('a renamed and a copied 1.5 MiB file: the level N archive holds neither, restore, dump and --include bring them back exactly', async () => {
    const a = app('dedupe');
    const big = crypto.randomBytes(1536 * 1024);
    fs.writeFileSync(path.join(a.storage, 'videos', 'big.mp4'), big);
    const b0 = await create(a);
    fs.mkdirSync(path.join(a.storage, 'archive'));
    fs.renameSync(path.join(a.storage, 'videos', 'big.mp4'), path.join(a.storage, 'archive', 'renamed.mp4'));
    // a plain copy: new mtime and mode, same content
    fs.copyFileSync(path.join(a.storage, 'archive', 'renamed.mp4'), path.join(a.storage, 'images', 'copy.mp4'));
    fs.chmodSync(path.join(a.storage, 'images', 'copy.mp4'), 0o604);
    const b1 = await create(a);
    expect(b1.sidecar.level).toBe(1);
    // neither file's content is in the level 1 archive: it stores a few directory headers
    expect(b1.sidecar.content_bytes).toBe(0);
    expect(tarNames(b1.archive).filter((n) => n.endsWith('.mp4'))).toEqual([]);
    const ls = parseJsonStdout<{ entries: { path: string; archive: string; sha256: string }[] }>(await run(['ls', b1.id, '--json', '--backup-dir', a.backupDir], { cwd: a.root }));
    const sha = crypto.createHash('sha256').update(big).digest('hex');
    for (const p of ['archive/renamed.mp4', 'images/copy.mp4']) expect(ls.entries.find((e) => e.path === p)).toMatchObject({ archive: b0.id, sha256: sha });
    const want = tree(a.storage);
    const target = path.join(a.root, 'r1');
    await restoreTo(a, b1.id, target);
    expect(tree(path.join(target, 'storage'))).toEqual(want);
    const d = spawnSync(process.execPath, [BIN, 'dump', b1.id, 'images/copy.mp4', '--backup-dir', a.backupDir], { cwd: a.root, maxBuffer: 8 << 20 });
    expect(d.status, d.stderr.toString()).toBe(0);
    expect(Buffer.compare(d.stdout, big)).toBe(0);
    const inc = path.join(a.root, 'r1-include');
    await restoreTo(a, b1.id, inc, '--include', 'archive');
    expect(fs.readFileSync(path.join(inc, 'storage', 'archive', 'renamed.mp4')).equals(big)).toBe(true);
    expect(fs.existsSync(path.join(inc, 'storage', 'videos'))).toBe(false);
    // the base is pinned by the content it holds for b1, and a damaged base is found through it
    flipByte(b0.archive, 2000);
    const v = await run(['verify', b1.id, '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
  });
});

describe('the manual restore with GNU tar and coreutils (item 2: the lines of docs/restore-by-hand.md, run literally)', () => {
  it('replaying the chain oldest to newest (delete what each manifest marks gone, then tar -xzf its archive) gives the tree', async () => {
    const a = app('manual');
    // a name that is not UTF-8 and one with a tab and a newline: the one-liner must not trip on them
    fs.writeFileSync(Buffer.concat([Buffer.from(`${a.storage}/`), Buffer.from('caf\xe9.txt', 'latin1')]), 'latin-1 name');
    fs.writeFileSync(path.join(a.storage, 'tab\there\nnewline.txt'), 'odd name');
    fs.writeFileSync(path.join(a.storage, 'videos', 'big one.mp4'), crypto.randomBytes(1100 * 1024));
    await create(a);
    fs.rmSync(path.join(a.storage, 'images', 'nested'), { recursive: true });
    fs.rmSync(path.join(a.storage, 'tab\there\nnewline.txt'));
    fs.writeFileSync(path.join(a.storage, 'videos', 'clip 02.mp4'), 'second clip');
    await create(a);
    fs.rmSync(path.join(a.storage, 'zero-length.dat'));
    fs.mkdirSync(path.join(a.storage, 'zero-length.dat'));
    fs.writeFileSync(path.join(a.storage, 'zero-length.dat', 'inside'), 'now a directory');
    // a large file renamed into a new directory: stored by reference, put in place by the copy step
    fs.mkdirSync(path.join(a.storage, 'moved here'));
    fs.renameSync(path.join(a.storage, 'videos', 'big one.mp4'), path.join(a.storage, 'moved here', 'big one.mp4'));
    const last = await create(a);
    expect(last.sidecar.content_bytes).toBeLessThan(100);
    const want = tree(a.storage, false);

    const page = fs.readFileSync(path.join(__dirname, '..', '..', 'docs', 'restore-by-hand.md'), 'utf8');
    const section = page.slice(page.indexOf('# Restoring by hand'));
    const script = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
    expect(script, 'docs/restore-by-hand.md shows the manual restore in a sh block').toBeTruthy();
    const target = path.join(a.root, 'manual');
    fs.mkdirSync(target);
    const r = sh('bash', ['-euo', 'pipefail', '-c', script!], {
      cwd: target,
      env: { ...process.env, BACKUPS: path.join(a.backupDir, 'storage'), ID: last.id },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(tree(path.join(target, 'storage'), false)).toEqual(want);
    expect(latin1File(path.join(target, 'storage'))).toBe('latin-1 name');
    // and our own restore of the same chain, names that are not UTF-8 included
    const ours = path.join(a.root, 'ours');
    await restoreTo(a, last.id, ours);
    expect(tree(path.join(ours, 'storage'))).toEqual(tree(a.storage));
    expect(latin1File(path.join(ours, 'storage'))).toBe('latin-1 name');
  });
});

describe('rotation of chains (item 2)', () => {
  it('never removes a backup of a kept backup\'s chain (archives and manifests), says what each kept backup pins, and what is left restores', async () => {
    const a = app('rotate');
    const x = path.join(a.storage, 'markers', 'marker.patt');
    const b0 = await create(a);
    fs.appendFileSync(x, 'first change\n');
    const b1 = await create(a);
    fs.appendFileSync(x, 'second change\n');
    const b2 = await create(a);
    // b2 holds the newest marker.patt; b1's archive holds nothing b2 needs, but its manifest is part of b2's file list
    expect(b2.sidecar.references).toEqual([b0.id, b1.id, b2.id]);
    const dry = await run(['rotate', '--max-backups', '1', '--dry-run', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(dry.code, describeRun(dry)).toBe(0);
    expect(dry.stdout).toContain(`storage ${b2.id} pins its chain: ${b0.id}, ${b1.id}`);
    const r = await run(['rotate', '--max-backups', '1', '--json', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(0);
    const doc = parseJsonStdout<{ kept: { id: string; reasons: string[]; pins?: string[] }[]; removed: { id: string }[] }>(r);
    expect(doc.removed).toEqual([]);
    expect(doc.kept.find((k) => k.id === b2.id)?.pins).toEqual([b0.id, b1.id]);
    expect(doc.kept.find((k) => k.id === b1.id)?.reasons).toEqual([`chain needed by storage ${b2.id}`]);
    // a new chain: the old one goes once no kept backup needs it
    const b3 = await create(a, '--full');
    fs.appendFileSync(x, 'third change\n');
    const b4 = await create(a);
    const want4 = tree(a.storage);
    const r2 = await run(['rotate', '--max-backups', '1', '--json', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(r2.code, describeRun(r2)).toBe(0);
    const doc2 = parseJsonStdout<{ kept: { id: string; pins?: string[] }[]; removed: { id: string }[] }>(r2);
    expect(doc2.removed.map((e) => e.id).sort()).toEqual([b0.id, b1.id, b2.id]);
    expect(doc2.kept.find((k) => k.id === b4.id)?.pins).toEqual([b3.id]);
    const v = await run(['verify', '--all', '--backup-dir', a.backupDir], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(0);
    const target = path.join(a.root, 'after-rotate');
    await restoreTo(a, b4.id, target);
    expect(tree(path.join(target, 'storage'))).toEqual(want4);
  });
});

describe('offsite copies of chains (item 3)', () => {
  it('sync sends only what the remote lacks; restore --from downloads the chain the backup needs', async () => {
    const a = app('sync');
    const nas = path.join(a.root, 'nas');
    fs.mkdirSync(nas);
    const remotes = path.join(a.root, 'remotes.json');
    fs.writeFileSync(remotes, JSON.stringify({ remotes: { nas: { url: `file://${nas}` } } }), { mode: 0o600 });
    const sync = async () => {
      const r = await run(['sync', '--remote', 'nas', '--remotes-config', remotes, '--json', ...a.flags], { cwd: a.root });
      expect(r.code, describeRun(r)).toBe(0);
      return parseJsonStdout<{ remotes: { result: { bytes: number; synced: { id: string; uploaded: string[] }[] } }[] }>(r).remotes[0].result;
    };
    const b0 = await create(a);
    const first = await sync();
    expect(first.bytes).toBeGreaterThan(b0.sidecar.file_size);
    const b1 = await create(a);
    const second = await sync();
    // the new backup's empty archive, its manifest and its sidecar: nothing of the base again
    expect(second.synced.flatMap((s) => s.uploaded).sort()).toEqual(
      [b1.sidecar.backup_path, b1.sidecar.manifest.file, `storage_backup_${b1.id}.json`].map((f) => `storage/${f}`).sort(),
    );
    expect(second.bytes).toBeLessThan(20_000);
    const want = tree(a.storage);
    fs.rmSync(a.backupDir, { recursive: true });
    const target = path.join(a.root, 'from-nas');
    const r = await run(['restore', b1.id, '--from', 'nas', '--remotes-config', remotes, '--target', target, '--yes', ...a.flags], { cwd: a.root });
    expect(r.code, describeRun(r)).toBe(0);
    expect(tree(path.join(target, 'storage'))).toEqual(want);
    // the remote copy of a backup is only as good as its chain there
    fs.rmSync(path.join(nas, 'storage', b0.sidecar.backup_path));
    const v = await run(['verify', b1.id, '--remote', 'nas', '--remotes-config', remotes, ...a.flags], { cwd: a.root });
    expect(v.code, describeRun(v)).toBe(3);
    expect(v.stdout + v.stderr).toContain(`needs the archive of storage backup ${b0.id}`);
  });
});

describe('browse and partial restore from the manifest (item 4)', () => {
  it('ls, diff, dump and restore --include, each also with --json', async () => {
    const a = app('browse');
    const b0 = await create(a);
    fs.writeFileSync(path.join(a.storage, 'images', 'added.jpg'), 'added');
    fs.rmSync(path.join(a.storage, 'notes.tmp'));
    fs.chmodSync(path.join(a.storage, 'scripts', 'run.sh'), 0o700);
    fs.appendFileSync(path.join(a.storage, 'markers', 'marker.patt'), 'x');
    const b1 = await create(a);
    const cli = (...args: string[]) => run([...args, '--backup-dir', a.backupDir], { cwd: a.root });

    const ls = await cli('ls', b1.id, 'images', '--json');
    expect(ls.code, describeRun(ls)).toBe(0);
    const listed = parseJsonStdout<{ entries: { path: string; type: string; archive: string; sha256?: string }[] }>(ls).entries;
    expect(listed.map((e) => e.path)).toEqual(['images', 'images/added.jpg', 'images/videos-link', 'images/фото 1.jpg', 'images/фото 2.jpg', 'images/nested', 'images/nested/deeper', 'images/nested/deeper/file with spaces.bin', 'images/nested/empty']);
    expect(listed.find((e) => e.path === 'images/added.jpg')).toMatchObject({ type: 'file', archive: b1.id });
    expect(listed.find((e) => e.path === 'images/фото 2.jpg')).toMatchObject({ archive: b0.id, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const human = await cli('ls', b1.id);
    expect(human.stdout).toMatch(/l0777 .* link to photo -> images\/фото 1\.jpg/);

    const diff = await cli('diff', b0.id, b1.id, '--json');
    expect(diff.code, describeRun(diff)).toBe(0);
    expect(parseJsonStdout(diff)).toEqual({
      from: b0.id,
      to: b1.id,
      added: ['images/added.jpg'],
      removed: ['notes.tmp'],
      changed: [
        { path: 'markers/marker.patt', what: ['size', 'content', 'mtime'] },
        { path: 'scripts/run.sh', what: ['mode'] },
      ],
    });
    expect((await cli('diff', b0.id, b1.id)).stdout).toContain('1 added, 1 removed, 2 changed');

    // the content, byte for byte (random data: read stdout as bytes, not text)
    const dumped = spawnSync(process.execPath, [BIN, 'dump', b1.id, 'images/фото 2.jpg', '--backup-dir', a.backupDir], { cwd: a.root, maxBuffer: 64 << 20 });
    expect(dumped.status, dumped.stderr.toString()).toBe(0);
    expect(dumped.stdout.equals(fs.readFileSync(path.join(a.storage, 'images', 'фото 2.jpg')))).toBe(true);
    const dj = await cli('dump', b1.id, 'images/added.jpg', '--json');
    expect(parseJsonStdout(dj)).toMatchObject({ path: 'images/added.jpg', size: 5, archive: b1.id });
    const missing = await cli('dump', b1.id, 'notes.tmp');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('has no "notes.tmp"');
    const dir = await cli('dump', b1.id, 'images');
    expect(dir.code).toBe(2);

    const target = path.join(a.root, 'partial');
    const part = await run(['restore', b1.id, '--target', target, '--include', 'images/nested', '--include', 'markers/marker.patt', '--yes', '--json', ...a.flags], { cwd: a.root });
    expect(part.code, describeRun(part)).toBe(0);
    const got = tree(path.join(target, 'storage'));
    const src = tree(a.storage);
    expect(Object.keys(got).sort()).toEqual(['.', 'images', 'images/nested', 'images/nested/deeper', 'images/nested/deeper/file with spaces.bin', 'images/nested/empty', 'markers', 'markers/marker.patt']);
    for (const k of ['images/nested/deeper/file with spaces.bin', 'markers/marker.patt']) expect(got[k]).toEqual(src[k]);
    const noTarget = await run(['restore', b1.id, '--include', 'images', '--yes', ...a.flags], { cwd: a.root });
    expect(noTarget.code).toBe(2);
    expect(noTarget.stderr).toContain('needs --target');
  });
});
