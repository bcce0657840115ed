#!/usr/bin/env node
// Issue 27's table: a first (level 0) storage backup, a nothing-changed run and a restore of the latest
// (with its verification, the default) beside restic and Borg; `create --encrypt` and the restore of an
// encrypted backup beside the plain ones; `tar -czf` and `tar -xzf` + `sha256sum` of our archive as the
// reference floors. Every row: BENCH_RUNS runs (default 3), the tools taking turns within each run, `sync`
// before each timed operation, /usr/bin/time for wall, CPU (user + system) and peak RSS.
// Usage: npm run build && node bench/first-restore.mjs DATASET_DIR (holding storage/) [ONLY=vb,vb-enc,...]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'bin', 'vertex-backup.js');
const log = (m) => process.stderr.write(`${m}\n`);
const rm = (p) => fs.rmSync(p, { recursive: true, force: true });
const has = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
const load = () => os.loadavg()[0].toFixed(1);

function timed(cmd, args, { cwd, env } = {}) {
  spawnSync('sync');
  const tf = path.join(os.tmpdir(), `vb-fr-time-${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-f', '%e %U %S %M', '-o', tf, cmd, ...args], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  const [wall, user, sys, rss] = fs.readFileSync(tf, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  rm(tf);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { wall, cpu: user + sys, rssMb: rss / 1024, stdout: r.stdout.toString() };
}

const dataset = process.argv[2];
if (!dataset) {
  log('usage: node bench/first-restore.mjs DATASET_DIR');
  process.exit(2);
}
const only = process.env.ONLY?.split(',');
const want = (k) => !only || only.includes(k);
const work = fs.mkdtempSync(path.join(process.env.BENCH_TMP ?? os.tmpdir(), 'vb-fr-'));
const parent = path.join(work, 'tree');
fs.mkdirSync(parent);
spawnSync('cp', ['-a', path.join(dataset, 'storage'), parent]);
spawnSync('sh', ['-c', `tar -cf - -C ${parent} storage > /dev/null`]); // warm cache
const key = path.join(work, 'key.txt');
spawnSync('age-keygen', ['-o', key], { stdio: 'ignore' });
const recipient = fs
  .readFileSync(key, 'utf8')
  .match(/public key: (age1\S+)/)[1];

const results = new Map(); // row -> [{wall,cpu,rssMb}]
const add = (row, r) => {
  if (!results.has(row)) results.set(row, []);
  results.get(row).push(r);
  log(`  ${row}: ${r.wall.toFixed(2)} s, CPU ${r.cpu.toFixed(2)} s, ${r.rssMb.toFixed(0)} MB (load ${load()})`);
};

const reps = Number(process.env.BENCH_RUNS ?? 3);
const loads = [load()];
for (let rep = 0; rep < reps; rep++) {
  const d = path.join(work, `rep${rep}`);
  fs.mkdirSync(d);
  const vbArgs = (dir, ...a) => [cli, ...a, '--backup-dir', dir, '--storage-path', path.join(parent, 'storage'), '--json'];
  if (want('vb')) {
    const dir = path.join(d, 'vb');
    add('vertex-backup first backup', timed(process.execPath, vbArgs(dir, 'create', '--type', 'storage')));
    add('vertex-backup nothing changed', timed(process.execPath, vbArgs(dir, 'create', '--type', 'storage')));
    const t = path.join(d, 'vb-restore');
    add('vertex-backup restore latest (verifies)', timed(process.execPath, [...vbArgs(dir, 'restore', 'latest', '--yes'), '--target', t]));
    rm(t);
    // the level 0 archive itself, for the tar floors (nothing-changed run is level 1, so pick the first)
    const arch = fs
      .readdirSync(path.join(dir, 'storage'))
      .filter((n) => n.endsWith('.tar.gz'))
      .sort()[0];
    const a = path.join(dir, 'storage', arch);
    const tx = path.join(d, 'tar-x');
    fs.mkdirSync(tx);
    add('sha256sum + tar -xzf (our archive)', timed('sh', ['-c', `sha256sum ${a} >/dev/null && tar -xzf ${a} -C ${tx}`]));
    rm(tx);
    rm(dir);
  }
  if (want('vb-enc')) {
    const dir = path.join(d, 'vbe');
    add('vertex-backup first backup --encrypt', timed(process.execPath, [...vbArgs(dir, 'create', '--type', 'storage', '--encrypt'), '--recipient', recipient]));
    const t = path.join(d, 'vbe-restore');
    add('vertex-backup restore latest encrypted (verifies)', timed(process.execPath, [...vbArgs(dir, 'restore', 'latest', '--yes', '--identity', key), '--target', t]));
    rm(t);
    rm(dir);
  }
  if (want('restic') && has('restic')) {
    const repo = path.join(d, 'restic');
    const env = { RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(d, 'restic-cache') };
    spawnSync('restic', ['-r', repo, 'init', '-q'], { env: { ...process.env, ...env } });
    add('restic first backup', timed('restic', ['-r', repo, 'backup', '-q', 'storage'], { cwd: parent, env }));
    add('restic nothing changed', timed('restic', ['-r', repo, 'backup', '-q', 'storage'], { cwd: parent, env }));
    const t = path.join(d, 'restic-restore');
    add('restic restore latest', timed('restic', ['-r', repo, 'restore', 'latest', '-q', '--target', t], { env }));
    rm(t);
    rm(repo);
  }
  if (want('borg') && has('borg')) {
    const repo = path.join(d, 'borg');
    const env = { BORG_PASSPHRASE: '', BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_BASE_DIR: path.join(d, 'borg-base') };
    spawnSync('borg', ['init', '-e', 'none', repo], { env: { ...process.env, ...env } });
    add('borg first backup', timed('borg', ['create', `${repo}::a1`, 'storage'], { cwd: parent, env }));
    add('borg nothing changed', timed('borg', ['create', `${repo}::a2`, 'storage'], { cwd: parent, env }));
    const t = path.join(d, 'borg-restore');
    fs.mkdirSync(t);
    add('borg extract latest', timed('borg', ['extract', `${repo}::a2`], { cwd: t, env }));
    rm(t);
    rm(repo);
  }
  if (want('tar')) {
    const out = path.join(d, 'x.tar.gz');
    add('tar -czf', timed('tar', ['-czf', out, 'storage'], { cwd: parent }));
    rm(out);
    add('tar -cf - | sha256sum', timed('sh', ['-c', 'tar -cf - storage | sha256sum >/dev/null'], { cwd: parent }));
  }
  rm(d);
  loads.push(load());
}
rm(work);

const median = (xs) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const lines = ['| operation | runs (wall s) | median wall s | CPU s | CPU % | peak RSS MB |', '| --- | --- | ---: | ---: | ---: | ---: |'];
const med = {};
for (const [row, rs] of results) {
  const m = { wall: median(rs.map((r) => r.wall)), cpu: median(rs.map((r) => r.cpu)), rss: Math.max(...rs.map((r) => r.rssMb)) };
  med[row] = m;
  lines.push(`| ${row.replaceAll('|', '\\|')} | ${rs.map((r) => r.wall.toFixed(2)).join(' / ')} | ${m.wall.toFixed(2)} | ${m.cpu.toFixed(2)} | ${((100 * m.cpu) / m.wall).toFixed(0)}% | ${m.rss.toFixed(0)} |`);
}
lines.push('', `load average (1 min) at the start of each run and the end: ${loads.join(', ')}`);
const ratio = (a, b) => (med[a] && med[b] ? `${(med[a].wall / med[b].wall).toFixed(2)}×` : 'n/a');
lines.push(
  '',
  `first backup / borg: ${ratio('vertex-backup first backup', 'borg first backup')}; tar -czf / first backup: ${ratio('tar -czf', 'vertex-backup first backup')}`,
  `restore / restic: ${ratio('vertex-backup restore latest (verifies)', 'restic restore latest')}; restore / borg: ${ratio('vertex-backup restore latest (verifies)', 'borg extract latest')}; restore / (sha256sum + tar -xzf): ${ratio('vertex-backup restore latest (verifies)', 'sha256sum + tar -xzf (our archive)')}`,
  `encrypt / plain: ${ratio('vertex-backup first backup --encrypt', 'vertex-backup first backup')}; encrypted restore / plain: ${ratio('vertex-backup restore latest encrypted (verifies)', 'vertex-backup restore latest (verifies)')}`,
  `nothing changed / restic: ${ratio('vertex-backup nothing changed', 'restic nothing changed')}; / borg: ${ratio('vertex-backup nothing changed', 'borg nothing changed')}`,
);
process.stdout.write(`${lines.join('\n')}\n`);
