#!/usr/bin/env node
// npm run bench: times vertex-backup as whole processes beside the reference tools, in one run on
// one machine, and prints the ratios (absolute times drift between runs on shared machines).
// Environment: SCALE (data set size, default 1), BENCH_RUNS (runs per operation, default 3),
// BENCH_CACHE (where data sets are kept between runs, default $TMPDIR/vb-bench-cache),
// BENCH_ONLY (comma list of groups: storage,encrypt,codec,compressible,database,writer,verify,restore,catalog,memory,incremental),
// BENCH_BACKUP_TIMEOUT (seconds for `sqlite3 .backup` under a writer, default 20), BENCH_KEEP=1.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { syntheticCatalog } from './synthetic-catalog.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const cli = path.join(root, 'bin', 'vertex-backup.js');
const SCALE = process.env.SCALE ?? '1';
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3) || 3);
const CACHE = process.env.BENCH_CACHE ?? path.join(os.tmpdir(), 'vb-bench-cache');
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
const BACKUP_TIMEOUT_S = Number(process.env.BENCH_BACKUP_TIMEOUT ?? 20);
const MEMORY_LIMIT_MB = 150;
const TIME = fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

const log = (msg) => process.stderr.write(`${msg}\n`);
const want = (group) => !ONLY || ONLY.has(group);
const has = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const rm = (p) => fs.rmSync(p, { recursive: true, force: true });

/** Size of a file, or the sum over a directory tree. */
function sizeOf(p) {
  if (!p) return NaN;
  const st = fs.lstatSync(p, { throwIfNoEntry: false });
  if (!st) return NaN;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const e of fs.readdirSync(p)) total += sizeOf(path.join(p, e));
  return total;
}

/**
 * One run of a command under /usr/bin/time: wall and CPU seconds and peak RSS of the child.
 * A timeout kills the whole process group (time, the tool and anything it started).
 */
function runOnce(cmd, args, { cwd = root, timeoutS = 900, env = {} } = {}) {
  const timeFile = path.join(os.tmpdir(), `vb-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const argv = TIME ? [TIME, '-f', '%e %U %S %M', '-o', timeFile, cmd, ...args] : [cmd, ...args];
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), {
      cwd,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
    }, timeoutS * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const wallHr = Number(process.hrtime.bigint() - started) / 1e9;
      let wall = wallHr;
      let cpu = NaN;
      let rssMb = NaN;
      try {
        const line = fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop();
        const [e, u, s, m] = line.split(/\s+/).map(Number);
        if (Number.isFinite(e)) [wall, cpu, rssMb] = [e, u + s, m / 1024];
      } catch {}
      rm(timeFile);
      // /usr/bin/time reports the child's exit status as its own, and a note on stderr when non-zero
      resolve({ code: timedOut ? null : code, timedOut, wall: timedOut ? NaN : wall, cpu, rssMb, stdout, stderr });
    });
  });
}

const rows = [];

/**
 * The codec alone, without the CLI around it: the same tar stream piped through the parallel gzip
 * filter (dist/codec/pgzip.js) and through the reference compressors. Separates what the codec costs
 * from what the archiving pipeline (walking, reading, hashing, writing) costs.
 */
async function codecRows(group, parent, name, tools, out) {
  const pgzip = pathToFileURL(path.join(root, 'dist', 'codec', 'pgzip.js')).href;
  const filter = `import(${JSON.stringify(pgzip)}).then(async (m) => { const { pipeline } = await import("node:stream/promises"); await pipeline(process.stdin, m.createParallelGzip(), process.stdout); })`;
  const file = out(`${group.replace(/\W+/g, '-')}.codec`);
  const piped = (label, cmd, available = true) =>
    measure(group, label, 'sh', ['-c', `tar -cf - -C '${parent}' '${name}' | ${cmd} > '${file}'`], { output: () => sizeOf(file), prepare: () => rm(file), available });
  await piped('tar -cf - | node pgzip (codec alone)', `'${process.execPath}' -e '${filter}'`);
  await piped('tar -cf - | gzip -6', 'gzip -6');
  await piped('tar -cf - | pigz -6', 'pigz -6', tools.pigz);
  await piped('tar -cf - | zstd -T0 -3', 'zstd -q -T0 -3', tools.zstd);
  rm(file);
}

/**
 * Runs an operation RUNS times and records medians. `prepare` runs untimed before each run (clean
 * the output), `output` measures the result after it, `check` may reject a run.
 */
async function measure(group, name, cmd, args, { prepare, output, check, timeoutS, env, cwd, available = true, note } = {}) {
  const row = { group, name, runs: 0, failed: 0, timedOut: 0, wall: NaN, cpu: NaN, outMb: NaN, rssMb: NaN, note };
  rows.push(row);
  if (!available) {
    row.status = 'n/a';
    log(`  ${name}: n/a`);
    return row;
  }
  const walls = [];
  const cpus = [];
  const rss = [];
  const outs = [];
  for (let i = 0; i < RUNS; i++) {
    const ctx = prepare ? await prepare(i) : {};
    const r = await runOnce(typeof cmd === 'function' ? cmd(ctx) : cmd, typeof args === 'function' ? args(ctx) : args, { timeoutS, env, cwd });
    row.runs++;
    if (r.timedOut) {
      row.timedOut++;
      log(`  ${name}: run ${i + 1} did not finish in ${timeoutS} s`);
      continue;
    }
    const problem = r.code !== 0 ? `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` : check?.(r, ctx);
    if (problem) {
      row.failed++;
      row.error = problem;
      log(`  ${name}: run ${i + 1} failed: ${problem}`);
      continue;
    }
    walls.push(r.wall);
    cpus.push(r.cpu);
    rss.push(r.rssMb);
    if (output) outs.push(output(r, ctx) / 1e6);
    row.last = { stdout: r.stdout, ctx };
  }
  Object.assign(row, { wall: median(walls), cpu: median(cpus), rssMb: median(rss), peakRssMb: rss.length ? Math.max(...rss) : NaN, outMb: median(outs) });
  row.status = walls.length === RUNS ? 'ok' : row.timedOut === RUNS ? 'did not finish' : walls.length === 0 ? 'failed' : 'partial';
  log(`  ${name}: ${row.status}, median ${fmt(row.wall, 2)} s, cpu ${fmt(row.cpu, 2)} s, ${fmt(row.outMb, 1)} MB, rss ${fmt(row.rssMb, 0)} MB`);
  return row;
}

const fmt = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : '–');

// ---------------------------------------------------------------------------------------------
// data set

function dataset() {
  const dir = path.join(CACHE, `scale-${SCALE}`);
  const info = path.join(dir, 'dataset-info.txt');
  const complete = () => fs.existsSync(info) && fs.readFileSync(info, 'utf8').includes('storage files=');
  if (!complete()) {
    rm(dir);
    fs.mkdirSync(CACHE, { recursive: true });
    log(`building the data set (SCALE=${SCALE}) in ${dir} …`);
    execFileSync('bash', [path.join(here, 'make-dataset.sh'), dir, SCALE], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  return dir;
}

function warm(dir) {
  // GNU tar skips reading file data when writing to /dev/null, so read through a pipe
  spawnSync('sh', ['-c', `tar -cf - -C '${dir}' . | cat > /dev/null`], { stdio: 'ignore' });
}

/** The one artifact file a create wrote under backupDir/type/ (not its sidecar or file manifest), for sizes and later steps. */
function artifact(backupDir, type) {
  const dir = path.join(backupDir, type);
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => !f.endsWith('.json') && !f.endsWith('.manifest.gz')) : [];
  return files.length ? path.join(dir, files.sort()[0]) : undefined;
}

function idFromCreate(stdout, type) {
  try {
    const doc = JSON.parse(stdout);
    const b = (doc.backups ?? []).find((x) => x.type === type);
    return b?.id ?? doc.id;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------

async function main() {
  if (!fs.existsSync(cli) || !fs.existsSync(path.join(root, 'dist'))) {
    log('bin/vertex-backup.js or dist/ is missing: run `npm run build` first (npm run bench does)');
    process.exit(1);
  }
  const ds = dataset();
  const storage = path.join(ds, 'storage');
  const db = path.join(ds, 'app_data.db');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-bench-run-'));
  const out = (name) => path.join(work, name);
  const vb = (backupDir, ...args) => [cli, ...args, '--backup-dir', backupDir, '--db-path', db, '--storage-path', storage, '--json'];
  log(`data set ${ds}; ${RUNS} runs per operation; scratch ${work}`);
  warm(ds);
  const tools = { pigz: has('pigz'), zstd: has('zstd'), sqlite3: has('sqlite3'), sha256sum: has('sha256sum'), python3: has('python3') };
  const gzipOk = {};

  try {
    // ------------------------------------------------------------------ storage backup
    let storageArchive;
    let storageBackupDir;
    let storageId;
    if (want('storage') || want('verify') || want('restore')) {
      log('storage backup');
      const vbRow = await measure('storage backup', 'vertex-backup create --type storage (gzip)', process.execPath, (ctx) => vb(ctx.dir, 'create', '--type', 'storage'), {
        prepare: (i) => {
          const dir = out(`storage-bk-${i}`);
          rm(out(`storage-bk-${i - 1}`));
          return { dir };
        },
        output: (_r, ctx) => sizeOf(artifact(ctx.dir, 'storage')),
      });
      if (vbRow.last) {
        storageBackupDir = vbRow.last.ctx.dir;
        storageArchive = artifact(storageBackupDir, 'storage');
        storageId = idFromCreate(vbRow.last.stdout, 'storage');
        gzipOk.gzipT = spawnSync('gzip', ['-t', storageArchive]).status === 0;
      }
      if (want('storage') || want('encrypt')) {
        // the same backup encrypted to one age recipient, in the same run: the cost of encryption
        const keyFile = out('bench-key.txt');
        rm(keyFile);
        const kg = spawnSync(process.execPath, [cli, 'keygen', '-o', keyFile, '--json'], { encoding: 'utf8' });
        const recipient = kg.status === 0 ? JSON.parse(kg.stdout).recipient : undefined;
        await measure('storage backup', 'vertex-backup create --type storage --recipient age1… (gzip + age)', process.execPath, (ctx) => vb(ctx.dir, 'create', '--type', 'storage', '--recipient', recipient), {
          prepare: (i) => {
            const dir = out(`storage-age-${i}`);
            rm(out(`storage-age-${i - 1}`));
            return { dir };
          },
          output: (_r, ctx) => sizeOf(artifact(ctx.dir, 'storage')),
          available: !!recipient,
        });
        for (let i = 0; i <= RUNS; i++) rm(out(`storage-age-${i}`));
      }
      if (want('storage')) {
        // each output is removed before the next run: overwriting a big file costs tar extra time
        const tarRef = (name, flags, file, available = true) =>
          measure('storage backup', name, 'tar', [...flags, out(file), '-C', ds, 'storage'], { output: () => sizeOf(out(file)), available, prepare: () => rm(out(file)) });
        await tarRef('tar -cf', ['-cf'], 'ref.tar');
        await tarRef('tar -czf', ['-czf'], 'ref.tar.gz');
        await tarRef('tar -I pigz -cf', ['-I', 'pigz', '-cf'], 'ref-pigz.tar.gz', tools.pigz);
        await tarRef("tar -I 'zstd -T0 -3' -cf", ['-I', 'zstd -T0 -3', '-cf'], 'ref.tar.zst', tools.zstd);
        for (const f of ['ref.tar', 'ref-pigz.tar.gz', 'ref.tar.zst']) rm(out(f));
      }
    }
    if (want('codec')) {
      log('the codec alone on the same tar stream');
      await codecRows('codec alone (media tree)', ds, 'storage', tools, out);
    }

    // ------------------------------------------------------------------ compressible-only tree
    if (want('compressible') || want('codec')) {
      log('compressible-only tree (marker files and a copy of the database)');
      const tree = out('compressible');
      const dst = path.join(tree, 'storage');
      fs.mkdirSync(dst, { recursive: true });
      spawnSync('sh', ['-c', `tar -cf - -C '${storage}' --exclude='*.jpg' --exclude='*.mp4' . | tar -xf - -C '${dst}'`]);
      fs.copyFileSync(db, path.join(dst, 'app_data.db.copy'));
      warm(tree);
      if (want('compressible')) await compressibleRows(tree, dst);
      if (want('codec')) await codecRows('codec alone (compressible tree)', tree, 'storage', tools, out);
      rm(tree);
    }
    async function compressibleRows(tree, dst) {
      await measure('compressible backup', 'vertex-backup create --type storage (gzip)', process.execPath, (ctx) => [cli, 'create', '--type', 'storage', '--backup-dir', ctx.dir, '--db-path', db, '--storage-path', dst, '--json'], {
        prepare: (i) => {
          rm(out(`comp-bk-${i - 1}`));
          return { dir: out(`comp-bk-${i}`) };
        },
        output: (_r, ctx) => sizeOf(artifact(ctx.dir, 'storage')),
      });
      await measure('compressible backup', 'tar -czf', 'tar', ['-czf', out('comp.tar.gz'), '-C', tree, 'storage'], { output: () => sizeOf(out('comp.tar.gz')), prepare: () => rm(out('comp.tar.gz')) });
      await measure('compressible backup', 'tar -I pigz -cf', 'tar', ['-I', 'pigz', '-cf', out('comp-pigz.tar.gz'), '-C', tree, 'storage'], {
        output: () => sizeOf(out('comp-pigz.tar.gz')),
        prepare: () => rm(out('comp-pigz.tar.gz')),
        available: tools.pigz,
      });
    }

    // ------------------------------------------------------------------ database backup
    if (want('database')) {
      log('database backup');
      await measure('database backup', 'vertex-backup create --type database', process.execPath, (ctx) => vb(ctx.dir, 'create', '--type', 'database'), {
        prepare: (i) => {
          rm(out(`db-bk-${i - 1}`));
          return { dir: out(`db-bk-${i}`) };
        },
        output: (_r, ctx) => sizeOf(artifact(ctx.dir, 'database')),
      });
      const dbOut = out('ref.db');
      const clean = () => {
        for (const s of ['', '-wal', '-shm', '-journal']) rm(dbOut + s);
      };
      await measure('database backup', 'sqlite3 db ".backup out"', 'sqlite3', [db, `.backup '${dbOut}'`], { prepare: clean, output: () => sizeOf(dbOut), available: tools.sqlite3 });
      await measure('database backup', 'sqlite3 db "VACUUM INTO out"', 'sqlite3', [db, `VACUUM INTO '${dbOut}'`], { prepare: clean, output: () => sizeOf(dbOut), available: tools.sqlite3 });
      clean();
    }

    // ------------------------------------------------------------------ database backup under writes
    if (want('writer')) {
      log('database backup while sqlite-writer.py commits continuously');
      // the writer inserts rows: it works on a copy so the cached data set stays as built
      const live = out('live.db');
      execFileSync('sqlite3', [db, `VACUUM INTO '${live}'`]);
      execFileSync('sqlite3', [live, 'PRAGMA journal_mode=WAL']);
      const status = out('writer.status');
      const writer = tools.python3 ? spawn('python3', [path.join(here, 'sqlite-writer.py'), live, '10', '0', status], { stdio: 'ignore' }) : undefined;
      if (writer) {
        for (let i = 0; i < 100 && !fs.existsSync(`${status}.started`); i++) await new Promise((r) => setTimeout(r, 50));
      }
      const available = Boolean(writer && fs.existsSync(`${status}.started`));
      const dbOut = out('ref-w.db');
      const clean = () => {
        for (const s of ['', '-wal', '-shm', '-journal']) rm(dbOut + s);
      };
      try {
        await measure('database backup under writes', 'vertex-backup create --type database', process.execPath, (ctx) => [cli, 'create', '--type', 'database', '--backup-dir', ctx.dir, '--db-path', live, '--storage-path', storage, '--json'], {
          prepare: (i) => {
            rm(out(`dbw-bk-${i - 1}`));
            return { dir: out(`dbw-bk-${i}`) };
          },
          output: (_r, ctx) => sizeOf(artifact(ctx.dir, 'database')),
          timeoutS: 120,
          available,
        });
        // .backup goes last: while it retries, the writer keeps growing the database the others copy
        await measure('database backup under writes', 'sqlite3 db "VACUUM INTO out"', 'sqlite3', [live, `VACUUM INTO '${dbOut}'`], {
          prepare: clean,
          output: () => sizeOf(dbOut),
          timeoutS: 120,
          available: available && tools.sqlite3,
        });
        await measure('database backup under writes', 'sqlite3 db ".backup out"', 'sqlite3', [live, `.backup '${dbOut}'`], {
          prepare: clean,
          output: () => sizeOf(dbOut),
          timeoutS: BACKUP_TIMEOUT_S,
          available: available && tools.sqlite3,
        });
      } finally {
        writer?.kill('SIGTERM');
        if (writer) await new Promise((r) => writer.once('exit', r));
        clean();
      }
      const txs = fs.existsSync(status) ? fs.readFileSync(status, 'utf8').trim().split(/\s+/) : [];
      if (txs.length) log(`  writer: ${txs[0]} transactions, ${txs[3]}/s`);
      rows.writerRate = Number(txs[3]);
      rm(live);
    }

    // ------------------------------------------------------------------ verify
    if (want('verify') && storageArchive) {
      log('verify');
      await measure('verify', `vertex-backup verify ${storageId ?? '--latest'}`, process.execPath, vb(storageBackupDir, 'verify', ...(storageId ? [storageId] : ['--latest'])), {});
      const sz = sizeOf(storageArchive);
      await measure('verify', 'sha256sum + tar -tzf', 'sh', ['-c', `sha256sum '${storageArchive}' > /dev/null && tar -tzf '${storageArchive}' > /dev/null`], {
        available: tools.sha256sum,
        note: `of the same ${fmt(sz / 1e6, 1)} MB archive`,
      });
      await measure('verify', 'sha256sum', 'sha256sum', [storageArchive], { available: tools.sha256sum });
    }

    // ------------------------------------------------------------------ restore
    if (want('restore') && storageArchive && storageId) {
      log('storage restore');
      // dummy live paths: whatever the restore does, it cannot touch the cached data set
      const restoreArgs = (target, ...extra) => [cli, 'restore', storageId, '--target', target, '--yes', ...extra, '--backup-dir', storageBackupDir, '--db-path', out('live-dummy.db'), '--storage-path', out('live-dummy-storage'), '--json'];
      const prepare = (i) => {
        rm(out(`restore-${i - 1}`));
        rm(out(`restore-${i}`));
        return { target: out(`restore-${i}`) };
      };
      await measure('storage restore', 'vertex-backup restore --no-verify', process.execPath, (ctx) => restoreArgs(ctx.target, '--no-verify'), { prepare, output: (_r, ctx) => sizeOf(ctx.target) });
      await measure('storage restore', 'vertex-backup restore (verifies first)', process.execPath, (ctx) => restoreArgs(ctx.target), { prepare, output: (_r, ctx) => sizeOf(ctx.target) });
      await measure('storage restore', 'tar -xzf', 'tar', (ctx) => ['-xzf', storageArchive, '-C', ctx.target], {
        prepare: (i) => {
          rm(out(`restore-${i - 1}`));
          rm(out(`restore-${i}`));
          fs.mkdirSync(out(`restore-${i}`), { recursive: true });
          return { target: out(`restore-${i}`) };
        },
        output: (_r, ctx) => sizeOf(ctx.target),
      });
      for (let i = 0; i < RUNS; i++) rm(out(`restore-${i}`));
    }
    if (storageBackupDir) rm(storageBackupDir);

    // ------------------------------------------------------------------ list, stats, --help
    if (want('catalog')) {
      log('list and stats with 1,000 backups; --help');
      const many = out('many');
      syntheticCatalog(many, 1000);
      await measure('catalog', "node -e ''", process.execPath, ['-e', ''], {});
      await measure('catalog', 'vertex-backup --help', process.execPath, [cli, '--help'], {});
      await measure('catalog', 'vertex-backup list (1,000 backups)', process.execPath, vb(many, 'list'), {
        check: (r) => {
          try {
            const doc = JSON.parse(r.stdout);
            const n = Array.isArray(doc) ? doc.length : (doc.backups ?? doc.items ?? []).length;
            return n >= 1000 || n === 0 ? undefined : `listed ${n} backups, expected 1000`;
          } catch {
            return 'stdout is not JSON';
          }
        },
      });
      await measure('catalog', 'vertex-backup stats (1,000 backups)', process.execPath, vb(many, 'stats'), {});
      rm(many);
    }

    // ------------------------------------------------------------------ memory
    if (want('incremental')) {
      // beside restic and Borg, in this same run (bench/incremental.mjs)
      const { incrementalBench } = await import('./incremental.mjs');
      rows.incremental = await incrementalBench(ds);
    }
    if (want('memory')) {
      log('peak memory of create --type full');
      await measure('memory', 'vertex-backup create --type full', process.execPath, (ctx) => vb(ctx.dir, 'create', '--type', 'full'), {
        prepare: (i) => {
          rm(out(`full-bk-${i - 1}`));
          return { dir: out(`full-bk-${i}`) };
        },
        output: (_r, ctx) => sizeOf(ctx.dir),
      });
    }
  } finally {
    if (process.env.BENCH_KEEP !== '1') rm(work);
    else log(`kept ${work}`);
  }

  report(ds, gzipOk);
}

// ---------------------------------------------------------------------------------------------
// report

function find(group, prefix, exact = false) {
  return rows.find((r) => r.group === group && (exact ? r.name === prefix : r.name.startsWith(prefix)));
}

function report(ds, gzipOk) {
  const groups = [...new Set(rows.map((r) => r.group))];
  const lines = [];
  lines.push(`## vertex-backup bench — SCALE=${SCALE}, ${RUNS} runs (medians), ${os.availableParallelism()} CPUs, Node ${process.version}`);
  lines.push('');
  lines.push('"× vertex" is the reference\'s wall time divided by vertex-backup\'s in the same group (above 1: vertex-backup is faster); "size ×" is vertex-backup\'s output over the reference\'s.');
  lines.push('');
  lines.push('| group | command | wall s | CPU s | output MB | peak RSS MB | × vertex | size × | status |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const g of groups) {
    const isOursName = (n) => n.startsWith('vertex-backup') || n.includes('node pgzip');
    const ours = rows.find((r) => r.group === g && isOursName(r.name));
    for (const r of rows.filter((x) => x.group === g)) {
      const isOurs = isOursName(r.name);
      const speed = !isOurs && ours && Number.isFinite(ours.wall) && Number.isFinite(r.wall) ? `${(r.wall / ours.wall).toFixed(2)}×` : r.timedOut === r.runs && r.runs > 0 ? '∞' : '';
      const size = !isOurs && ours && Number.isFinite(ours.outMb) && Number.isFinite(r.outMb) && r.outMb > 0 ? (ours.outMb / r.outMb).toFixed(4) : '';
      const limit = r.name.includes('.backup') ? BACKUP_TIMEOUT_S : 120;
      const finished = r.runs - r.timedOut - r.failed;
      const status =
        r.status === 'did not finish'
          ? `did not finish in ${limit} s (0/${r.runs})`
          : r.status === 'ok' || r.status === 'n/a'
            ? r.status
            : `${finished}/${r.runs} finished${r.timedOut ? `, ${r.timedOut} did not finish in ${limit} s` : ''}${r.error ? `; ${r.error.slice(0, 80)}` : ''}`;
      const cell = (x) => String(x).replace(/\|/g, '\\|').replace(/\s+/g, ' ');
      lines.push(`| ${g} | ${cell(r.name)} | ${fmt(r.wall, 2)} | ${fmt(r.cpu, 2)} | ${fmt(r.outMb, 1)} | ${fmt(r.peakRssMb, 0)} | ${speed} | ${size} | ${cell(status)} |`);
    }
  }

  const targets = [];
  const target = (name, ok, detail) => targets.push({ name, result: ok === undefined ? 'n/a' : ok ? 'PASS' : 'FAIL', detail });
  const vs = find('storage backup', 'vertex-backup');
  const gz = find('storage backup', 'tar -czf');
  const zs = find('storage backup', "tar -I 'zstd");
  const ratio = (a, b) => (a && b && Number.isFinite(a) && Number.isFinite(b) ? a / b : NaN);
  const check = (x, pred) => (Number.isFinite(x) ? pred(x) : undefined);
  if (vs) {
    const r1 = ratio(gz?.wall, vs.wall);
    target('storage backup ≥ 10× faster than tar -czf', check(r1, (x) => x >= 10), `${fmt(r1, 1)}×`);
    const r2 = ratio(vs.wall, zs?.wall);
    target("storage backup within 2× of tar -I 'zstd -T0 -3'", check(r2, (x) => x <= 2), `${fmt(r2, 2)}× its time`);
    const r3 = ratio(vs.outMb, gz?.outMb);
    target('archive ≤ 1% larger than tar -czf', check(r3, (x) => x <= 1.01), `${fmt((r3 - 1) * 100, 2)}%`);
    const enc = find('storage backup', 'vertex-backup create --type storage --recipient');
    const r4 = ratio(enc?.wall, vs.wall);
    target('encrypted storage backup ≤ 1.1× the unencrypted one (same run)', check(r4, (x) => x <= 1.1), `${fmt(r4, 2)}× its time`);
    target('archive readable by plain gzip (gzip -t)', gzipOk.gzipT, gzipOk.gzipT === undefined ? '' : gzipOk.gzipT ? 'gzip -t ok' : 'gzip -t failed');
  }
  const pg = find('codec alone (media tree)', 'tar -cf - | node pgzip');
  if (pg) {
    const r1 = ratio(find('codec alone (media tree)', 'tar -cf - | gzip -6')?.wall, pg.wall);
    const r2 = ratio(pg.wall, find('codec alone (media tree)', 'tar -cf - | zstd')?.wall);
    target('codec alone: ≥ 10× faster than gzip -6, within 2× of zstd -T0 -3 (media tree)', check(r1, (x) => x >= 10 && r2 <= 2), `${fmt(r1, 1)}× gzip's speed, ${fmt(r2, 2)}× zstd's time`);
  }
  const pc = find('codec alone (compressible tree)', 'tar -cf - | node pgzip');
  if (pc) {
    const r = ratio(find('codec alone (compressible tree)', 'tar -cf - | gzip -6')?.wall, pc.wall);
    const s = ratio(pc.outMb, find('codec alone (compressible tree)', 'tar -cf - | gzip -6')?.outMb);
    target('codec alone: ≥ 1.7× faster than gzip -6, size within 2% (compressible tree)', check(r, (x) => x >= 1.7 && s <= 1.02), `${fmt(r, 2)}×, size ${fmt((s - 1) * 100, 2)}%`);
  }
  const cv = find('compressible backup', 'vertex-backup');
  const cg = find('compressible backup', 'tar -czf');
  if (cv) {
    const r = ratio(cg?.wall, cv.wall);
    target('compressible-only: ≥ 1.7× faster than tar -czf', check(r, (x) => x >= 1.7), `${fmt(r, 2)}×`);
    const s = ratio(cv.outMb, cg?.outMb);
    target('compressible-only: size within 2% of tar -czf', check(s, (x) => x <= 1.02), `${fmt((s - 1) * 100, 2)}%`);
  }
  const dv = find('database backup', 'vertex-backup');
  const db = find('database backup', 'sqlite3 db ".backup');
  if (dv) {
    const r = ratio(dv.wall, db?.wall);
    target('database backup within 1.2× of sqlite3 .backup', check(r, (x) => x <= 1.2), `${fmt(r, 2)}× its time (includes Node start-up)`);
  }
  const wv = find('database backup under writes', 'vertex-backup');
  if (wv) target('database backup finishes while a writer commits', wv.status === 'n/a' ? undefined : wv.status === 'ok', `${wv.status}, ${fmt(wv.wall, 2)} s`);
  const rv = find('storage restore', 'vertex-backup restore --no-verify');
  const rt = find('storage restore', 'tar -xzf');
  if (rv) {
    const r = ratio(rv.wall, rt?.wall);
    target('restore within 1.2× of tar -xzf', check(r, (x) => x <= 1.2), `${fmt(r, 2)}× its time`);
  }
  const vv = find('verify', 'vertex-backup');
  const vsha = find('verify', 'sha256sum', true);
  if (vv) {
    const r = ratio(vsha?.wall, vv.wall);
    target('verify ≥ 80% of sha256sum throughput', check(r, (x) => x >= 0.8), `${fmt(r * 100, 0)}%`);
  }
  const help = find('catalog', 'vertex-backup --help');
  if (help) target('--help under 200 ms', check(help.wall, (x) => x < 0.2), `${fmt(help.wall * 1000, 0)} ms`);
  const mem = find('memory', 'vertex-backup');
  if (mem) target(`create --type full peak memory under ${MEMORY_LIMIT_MB} MB${SCALE === '4' ? '' : ' (the promise is for SCALE=4)'}`, check(mem.peakRssMb, (x) => x < MEMORY_LIMIT_MB), `${fmt(mem.peakRssMb, 0)} MB`);

  lines.push('');
  lines.push('| target | result | measured |');
  lines.push('| --- | --- | --- |');
  for (const t of targets) lines.push(`| ${t.name} | ${t.result} | ${t.detail} |`);
  if (rows.incremental) lines.push('', '### Incremental storage backups (beside restic and Borg)', '', rows.incremental);
  if (rows.writerRate) lines.push('', `The writer committed about ${Math.round(rows.writerRate)} transactions a second during the "under writes" group.`);
  const text = lines.join('\n');
  process.stdout.write(`${text}\n`);

  const results = {
    date: new Date().toISOString(),
    scale: Number(SCALE),
    runs: RUNS,
    machine: { cpus: os.availableParallelism(), node: process.version, platform: `${os.type()} ${os.release()}`, memoryMb: Math.round(os.totalmem() / 2 ** 20) },
    dataset: fs.existsSync(path.join(ds, 'dataset-info.txt')) ? fs.readFileSync(path.join(ds, 'dataset-info.txt'), 'utf8').trim() : undefined,
    rows: rows.map(({ last, ...r }) => r),
    targets,
  };
  fs.writeFileSync(path.join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`wrote ${path.join(here, 'results.json')}`);
}

await main();
