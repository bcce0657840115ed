#!/usr/bin/env node
// Incremental storage backups beside restic and Borg, measured in one run (issue 15's table):
// first backup, nothing changed, 1% of files changed (../shared/bench/mutate-files.py), restore of the
// latest, store after 3 runs; restore of the latest of a chain of 7 against `tar -xzf` of one full
// archive; peak RSS of a nothing-changed run at 20k and 200k files (memory flat in the number of files).
// Usage: node bench/incremental.mjs DATASET_DIR (holding storage/) — or through run.mjs (group "incremental").
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'bin', 'vertex-backup.js');
const mutate = ['../shared/bench/mutate-files.py', '../../shared/bench/mutate-files.py', '/work/shared/bench/mutate-files.py'].map((p) => path.resolve(here, p)).find((p) => fs.existsSync(p));
const log = (m) => process.stderr.write(`${m}\n`);
const has = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
const rm = (p) => fs.rmSync(p, { recursive: true, force: true });
const MB = 1e6;

function sizeOf(p) {
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return 0;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const e of fs.readdirSync(p)) total += sizeOf(path.join(p, e));
  return total;
}

/** Wall seconds and peak RSS (MB) of one process under /usr/bin/time. */
function timed(cmd, args, { cwd, env } = {}) {
  // the previous operation's writeback (600 MB after a first backup) is flushed first, so no tool pays
  // for another's dirty pages when it fsyncs
  spawnSync('sync');
  const tf = path.join(os.tmpdir(), `vb-incr-time-${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', '-o', tf, cmd, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const [wall, rss] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  rm(tf);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { wall, rssMb: rss / 1024, stdout: r.stdout.toString() };
}

function tools(work, parent) {
  const out = [];
  const vbDir = path.join(work, 'vb');
  const vb = (...a) => [cli, ...a, '--backup-dir', vbDir, '--storage-path', path.join(parent, 'storage'), '--json'];
  out.push({
    name: 'vertex-backup',
    store: vbDir,
    backup: () => timed(process.execPath, vb('create', '--type', 'storage')),
    restore: (target) => timed(process.execPath, [...vb('restore', 'latest', '--no-verify', '--yes'), '--target', target]),
  });
  if (has('restic')) {
    const repo = path.join(work, 'restic');
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(work, 'restic-cache') };
    out.push({
      name: 'restic',
      store: repo,
      init: () => spawnSync('restic', ['-r', repo, 'init', '-q'], { env: { ...process.env, ...env } }),
      backup: () => timed('restic', ['-r', repo, 'backup', '-q', 'storage'], { cwd: parent, env }),
      restore: (target) => timed('restic', ['-r', repo, 'restore', 'latest', '-q', '--target', target], { env }),
    });
  }
  if (has('borg')) {
    const repo = path.join(work, 'borg');
    const env = { BORG_PASSPHRASE: '', BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(work, 'borg-base') };
    let n = 0;
    out.push({
      name: 'borg',
      store: repo,
      init: () => spawnSync('borg', ['init', '-e', 'none', repo], { env: { ...process.env, ...env } }),
      backup: () => timed('borg', ['create', `${repo}::a${++n}`, 'storage'], { cwd: parent, env }),
      restore: (target) => {
        fs.mkdirSync(target, { recursive: true });
        return timed('borg', ['extract', `${repo}::a${n}`], { cwd: target, env });
      },
    });
  }
  return out;
}

/** Many small files, for the memory measurement. */
function smallTree(dir, files) {
  rm(dir);
  for (let i = 0; i < files; i++) {
    const d = path.join(dir, 'storage', `d${i % 100}`, `e${Math.floor(i / 100) % 20}`);
    if (i < 2000) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, `f${i}.txt`), `file ${i}\n`);
  }
}

/**
 * 1% of the files (by count, a different 1% each night, picked like mutate-files.py: ordered by the
 * SHA-256 of their path) get new random first 4 KiB: real new content, size kept.
 */
function changeOnePercent(root, night) {
  const files = [];
  const walkDir = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walkDir(p);
      else if (e.isFile()) files.push(p);
    }
  };
  walkDir(root);
  const key = (p) => createHash('sha256').update(path.relative(root, p)).digest('hex');
  const sorted = files.map((p) => [key(p), p]).sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((x) => x[1]);
  let bytes = 0;
  sorted.forEach((p, i) => {
    if (i % 100 !== night % 100) return;
    const size = fs.statSync(p).size;
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, randomBytes(Math.min(4096, size)), 0, Math.min(4096, size), 0);
    fs.closeSync(fd);
    bytes += size;
  });
  return bytes;
}

/**
 * 30 nightly storage runs with 1% changed each night and the default retention (MAX_BACKUPS 7 with
 * `create --rotate`, a new level 0 every 7 days), on a fake clock through the library's `now`: one night
 * apart, so --full-every and the ids see 30 days pass. The figure: the backup directory against the tree.
 */
export async function thirtyNights(parent, work) {
  log('incremental: 30 nights');
  const { resolveConfig, createBackup, runRotate, acquireLock } = await import(path.join(here, '..', 'dist', 'index.js'));
  const dir = path.join(work, 'nights');
  const tree = path.join(work, 'nights-tree');
  spawnSync('cp', ['-a', path.join(parent, 'storage'), tree]);
  const cfg = resolveConfig({ backupDir: dir, storagePath: tree }, { PATH: process.env.PATH }, work);
  const start = Date.parse('2026-01-01T02:00:00Z');
  const levels = [];
  let changed = 0;
  for (let night = 0; night < 30; night++) {
    if (night > 0) changed += changeOnePercent(tree, night);
    const now = new Date(start + night * 86_400_000);
    const r = await createBackup(cfg, { type: 'storage', now: () => now });
    levels.push(r.backups[0].level);
    const lock = await acquireLock(cfg.backupDir, 'bench rotate');
    try {
      await runRotate(cfg, { policy: cfg.retention });
    } finally {
      lock.release();
    }
  }
  const store = sizeOf(dir);
  const data = sizeOf(tree);
  const kept = fs.readdirSync(path.join(dir, 'storage')).filter((n) => n.endsWith('.json')).length;
  rm(dir);
  rm(tree);
  const f = (x, d = 2) => x.toFixed(d);
  return `30 nights, 1% of files changed each night (${f(changed / MB, 0)} MB of changed files in all), default retention: the backup directory holds ${f(store / MB, 0)} MB for a ${f(data / MB, 0)} MB tree (${f(store / data)}×), ${kept} storage backups kept; levels ${levels.join(' ')}.`;
}

export async function incrementalBench(dataset, work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-incr-'))) {
  const lines = [];
  const parent = path.join(work, 'tree');
  log(`incremental: copying ${dataset}/storage`);
  fs.mkdirSync(parent, { recursive: true });
  spawnSync('cp', ['-a', path.join(dataset, 'storage'), parent]);
  const save = path.join(work, 'mutate-save');
  // BENCH_RUNS repetitions (default 3), each in fresh stores, the tools taking turns within one
  // repetition (a machine whose load changes treats them alike); every figure is the median
  const reps = Number(process.env.BENCH_RUNS ?? 3);
  const runs = new Map();
  for (let rep = 0; rep < reps; rep++) {
    const repDir = path.join(work, `rep${rep}`);
    fs.mkdirSync(repDir, { recursive: true });
    for (const t of tools(repDir, parent)) {
      log(`incremental: ${t.name} (run ${rep + 1} of ${reps})`);
      t.init?.();
      const first = t.backup();
      const s1 = sizeOf(t.store);
      const same = t.backup();
      const s2 = sizeOf(t.store);
      const m = spawnSync('python3', [mutate, path.join(parent, 'storage'), save]).stdout.toString().trim().split(' ').map(Number);
      const changed = t.backup();
      const s3 = sizeOf(t.store);
      const target = path.join(work, `restore-${t.name}`);
      const restored = t.restore(target);
      rm(target);
      spawnSync('python3', [mutate, path.join(parent, 'storage'), save, '--restore']);
      rm(save);
      rm(t.store);
      if (!runs.has(t.name)) runs.set(t.name, []);
      runs.get(t.name).push({ first: first.wall, s1, same: same.wall, add2: s2 - s1, changed: changed.wall, add3: s3 - s2, restored: restored.wall, s3, changedFiles: m[0], changedBytes: m[1] });
    }
    rm(repDir);
  }
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
  };
  const rows = [...runs].map(([name, rs]) => {
    const m = Object.fromEntries(Object.keys(rs[0]).map((k) => [k, median(rs.map((r) => r[k]))]));
    return { name, ...m, sameAll: rs.map((r) => r.same) };
  });
  const f = (x, d = 2) => x.toFixed(d);
  lines.push(`Medians of ${reps} runs.`, '');
  lines.push('| | first backup | nothing changed | 1% of files changed | restore latest | store after 3 runs |');
  lines.push('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    lines.push(`| ${r.name} | ${f(r.first)} s, +${f(r.s1 / MB, 0)} MB | ${f(r.same)} s, +${f(r.add2 / 1e3, 1)} KB | ${f(r.changed)} s, +${f(r.add3 / MB)} MB | ${f(r.restored)} s | ${f(r.s3 / MB, 0)} MB |`);
  }
  const vbRow = rows.find((r) => r.name === 'vertex-backup');
  for (const peer of rows.filter((r) => r !== vbRow)) lines.push('', `nothing changed: vertex-backup / ${peer.name} = ${f(vbRow.same / peer.same)}× (runs: ${vbRow.sameAll.map((x) => f(x)).join(', ')} s against ${peer.sameAll.map((x) => f(x)).join(', ')} s).`);
  const c = rows[0];
  lines.push('', `1% changed: ${c.changedFiles} files, ${f(c.changedBytes / MB)} MB.`);

  // BENCH_INCR_TABLE_ONLY=1: just the table above (a quick re-run)
  if (process.env.BENCH_INCR_TABLE_ONLY) {
    rm(work);
    return lines.join('\n');
  }
  // a chain of 7 (level 0 and six nightly level N with 1% changed each), its restore against tar -xzf
  log('incremental: chain of 7');
  const chainDir = path.join(work, 'chain');
  const vb = (...a) => [cli, ...a, '--backup-dir', chainDir, '--storage-path', path.join(parent, 'storage'), '--json'];
  for (let i = 0; i < 7; i++) {
    if (i > 0) spawnSync('python3', [mutate, path.join(parent, 'storage'), path.join(work, `save-${i}`)]);
    timed(process.execPath, vb('create', '--type', 'storage'));
    // each night's change touches other files: put this night's back after the backup
    if (i > 0) spawnSync('python3', [mutate, path.join(parent, 'storage'), path.join(work, `save-${i}`), '--restore']);
  }
  const base = fs.readdirSync(path.join(chainDir, 'storage')).filter((n) => n.endsWith('.tar.gz')).sort()[0];
  const rt = path.join(work, 'chain-restore');
  const ours = timed(process.execPath, [...vb('restore', 'latest', '--no-verify', '--yes'), '--target', rt]);
  rm(rt);
  fs.mkdirSync(rt);
  const tar = timed('tar', ['-xzf', path.join(chainDir, 'storage', base), '-C', rt]);
  rm(rt);
  lines.push('', `restore of the latest of a chain of 7: ${f(ours.wall)} s; tar -xzf of one full archive: ${f(tar.wall)} s (${f(ours.wall / tar.wall)}×).`);

  lines.push('', await thirtyNights(parent, work));

  // memory flat in the number of files
  for (const n of [20_000, 200_000]) {
    log(`incremental: memory at ${n} files`);
    const dir = path.join(work, `small-${n}`);
    smallTree(dir, n);
    const bk = path.join(work, `small-bk-${n}`);
    const args = (...a) => [cli, ...a, '--backup-dir', bk, '--storage-path', path.join(dir, 'storage'), '--json'];
    const l0 = timed(process.execPath, args('create', '--type', 'storage'));
    const l1 = timed(process.execPath, args('create', '--type', 'storage'));
    lines.push(`peak RSS at ${n} files: level 0 ${f(l0.rssMb, 0)} MB (${f(l0.wall)} s), nothing changed ${f(l1.rssMb, 0)} MB (${f(l1.wall)} s).`);
    rm(dir);
    rm(bk);
  }
  rm(work);
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const ds = process.argv[2];
  if (!ds) {
    log('usage: node bench/incremental.mjs DATASET_DIR');
    process.exit(2);
  }
  process.stdout.write(`${await incrementalBench(ds)}\n`);
}
