#!/usr/bin/env node
// node bench/remote.mjs — upload and download throughput of vertex-backup's WebDAV and SFTP remotes
// against `rclone copy` to the same servers, in the same run (issue 6: target ≥ 90% of rclone's).
//
// Servers, all on 127.0.0.1 free ports: `rclone serve webdav` with basic auth (both clients talk to the
// same server implementation) and Debian's sshd with generated host and user keys (internal-sftp).
// Cases: one incompressible file of BENCH_REMOTE_MB, and a storage backup made by the real CLI, uploaded
// with `vertex-backup sync --remote NAME` (remotes config file, mode 0600) and downloaded with the
// library's downloadBackup (the path `restore --from` takes: size + sha256 checked while writing).
// Every figure is the median of BENCH_RUNS runs; ours and rclone alternate which goes first per run.
// Timing of ours includes opening and closing the remote (rclone's includes its start-up and login).
//
// Environment: BENCH_RUNS (default 3), BENCH_REMOTE_MB (default 256), BENCH_KEEP=1 (keep the temp dir),
// BENCH_OP_TIMEOUT (seconds per child process, default 600), BENCH_ONLY=webdav|sftp,
// BENCH_DIST (the built library the in-process rows import, default ./dist: to try a patched copy).
// Output: a markdown table on stdout, bench/remote-results.json. Exit 0 whatever the ratios (this is a
// measurement); exit 1 when something could not run (a server, a tool, a transfer that failed).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const cli = path.join(root, 'bin', 'vertex-backup.js');
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 3) || 3);
const MB = Math.max(1, Number(process.env.BENCH_REMOTE_MB ?? 256) || 256);
const OP_TIMEOUT_S = Number(process.env.BENCH_OP_TIMEOUT ?? 600) || 600;
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : undefined;
const TARGET = 0.9;
const USER = 'bench';
const PASS = randomBytes(12).toString('hex');

const log = (msg) => process.stderr.write(`${msg}\n`);
const rm = (p) => fs.rmSync(p, { recursive: true, force: true });
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, d) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const has = (tool) => spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;

class Fatal extends Error {}

// ---------------------------------------------------------------------------------------------
// cleanup: every child we start is killed with its descendants; the temp dir goes

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-remote-bench-'));
const children = new Set();

/** Kills a child we started and every process it forked (sshd forks one per connection). */
function killTree(pid) {
  const kids = new Map();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid) ?? [];
      list.push(Number(entry));
      kids.set(ppid, list);
    } catch {
      // ended while we looked
    }
  }
  const all = [];
  const walk = (p) => {
    all.push(p);
    for (const c of kids.get(p) ?? []) walk(c);
  };
  walk(pid);
  for (const p of all) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

let cleaned = false;
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) if (c.pid && c.exitCode === null && c.signalCode === null) killTree(c.pid);
  if (process.env.BENCH_KEEP === '1') log(`kept ${tmp}`);
  else rm(tmp);
}
process.on('exit', cleanup);
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(sig, () => {
    log(`\ninterrupted (${sig}): stopping servers, removing ${tmp}`);
    cleanup();
    process.exit(code);
  });
}

// ---------------------------------------------------------------------------------------------
// servers (the approach of test/helpers/servers.ts, in plain ESM)

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, child, logText, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Fatal(`server exited before listening: ${logText().trim()}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Fatal(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms: ${logText().trim()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function spawnServer(cmd, args, env) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  children.add(child);
  let text = '';
  child.stdout.on('data', (d) => (text += d));
  child.stderr.on('data', (d) => (text += d));
  return { child, log: () => text };
}

const rcloneCache = path.join(tmp, 'rclone-cache');
// rclone never reads the user's config: everything it needs comes from RCLONE_CONFIG_* variables
const rcloneBaseEnv = () => ({
  ...process.env,
  XDG_CACHE_HOME: rcloneCache,
  XDG_CONFIG_HOME: rcloneCache,
  RCLONE_CONFIG: path.join(rcloneCache, 'rclone.conf'),
});

async function startRcloneWebdav() {
  const dataDir = path.join(tmp, 'webdav-data');
  fs.mkdirSync(dataDir);
  const port = await freePort();
  const proc = spawnServer('rclone', ['serve', 'webdav', dataDir, '--addr', `127.0.0.1:${port}`, '--user', USER, '--pass', PASS, '--log-level', 'ERROR'], rcloneBaseEnv());
  await waitForPort(port, proc.child, proc.log);
  return { kind: 'webdav', port, dataDir, proc };
}

async function startSshd() {
  const dir = path.join(tmp, 'sshd');
  fs.mkdirSync(dir);
  const port = await freePort();
  const keygen = (file) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
  keygen(path.join(dir, 'host_ed25519'));
  keygen(path.join(dir, 'user_ed25519'));
  fs.copyFileSync(path.join(dir, 'user_ed25519.pub'), path.join(dir, 'authorized_keys'));
  const hostPub = fs.readFileSync(path.join(dir, 'host_ed25519.pub'), 'utf8').trim().split(/\s+/);
  fs.writeFileSync(path.join(dir, 'known_hosts'), `[127.0.0.1]:${port} ${hostPub[0]} ${hostPub[1]}\n`, { mode: 0o600 });
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir);
  fs.writeFileSync(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_ed25519')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'UsePAM no',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin yes',
      'Subsystem sftp internal-sftp',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  try {
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 }); // root's sshd wants its privilege separation dir
  } catch {
    // not root: sshd runs unprivileged without it
  }
  const proc = spawnServer('/usr/sbin/sshd', ['-D', '-e', '-f', path.join(dir, 'sshd_config')]);
  await waitForPort(port, proc.child, proc.log);
  return {
    kind: 'sftp',
    port,
    dataDir,
    proc,
    user: os.userInfo().username,
    userKey: path.join(dir, 'user_ed25519'),
    knownHosts: path.join(dir, 'known_hosts'),
  };
}

// ---------------------------------------------------------------------------------------------
// payloads

async function writeRandomFile(file, bytes) {
  const fd = fs.openSync(file, 'w', 0o600);
  try {
    const block = 1 << 20;
    for (let done = 0; done < bytes; done += block) fs.writeSync(fd, randomBytes(Math.min(block, bytes - done)));
  } finally {
    fs.closeSync(fd);
  }
}

function sha256File(file) {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function sizeOf(p) {
  const st = fs.statSync(p, { throwIfNoEntry: false });
  if (!st) return NaN;
  if (!st.isDirectory()) return st.size;
  let total = 0;
  for (const e of fs.readdirSync(p)) total += sizeOf(path.join(p, e));
  return total;
}

/** Runs a child to completion; wall seconds from spawn to exit. */
function run(cmd, args, { env, cwd = tmp, timeoutS = OP_TIMEOUT_S } = {}) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env: env ?? { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child.pid);
    }, timeoutS * 1000);
    child.on('error', (err) => {
      stderr += String(err.message);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: timedOut ? null : code, timedOut, wall: Number(process.hrtime.bigint() - started) / 1e9, stdout, stderr });
    });
  });
}

const tail = (r) => (r.timedOut ? `did not finish in ${OP_TIMEOUT_S} s` : `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' | ')}`);

/** A storage tree (~100 small files and two large ones), backed up by the real CLI. */
async function makeBackup() {
  const app = path.join(tmp, 'app');
  const storage = path.join(app, 'storage');
  for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(storage, `portraits/${d}`), { recursive: true });
  for (let i = 0; i < 100; i++) {
    const size = 2048 + ((i * 7919) % 60) * 1024; // 2–61 KiB
    // half incompressible (JPEG-like), half text-like
    const body = i % 2 ? randomBytes(size) : Buffer.from(`scan ${i} `.repeat(Math.ceil(size / 8)).slice(0, size));
    fs.writeFileSync(path.join(storage, `portraits/${i % 10}/p${i}.${i % 2 ? 'jpg' : 'json'}`), body);
  }
  fs.mkdirSync(path.join(storage, 'videos'));
  const large = Math.max(1, Math.floor(MB / 2)) * 1e6;
  await writeRandomFile(path.join(storage, 'videos/a.mp4'), large);
  await writeRandomFile(path.join(storage, 'videos/b.mp4'), large);
  const backupDir = path.join(tmp, 'backups');
  const r = await run(process.execPath, [cli, 'create', '--type', 'storage', '--backup-dir', backupDir, '--storage-path', storage, '--db-path', path.join(app, 'app_data.db'), '--json']);
  if (r.code !== 0) throw new Fatal(`vertex-backup create --type storage failed: ${tail(r)}`);
  let id;
  try {
    const doc = JSON.parse(r.stdout);
    id = (doc.backups ?? []).find((b) => b.type === 'storage')?.id ?? doc.id;
  } catch {
    // fall through
  }
  const dir = path.join(backupDir, 'storage');
  id ??= fs.readdirSync(dir).find((f) => f.endsWith('.json'))?.replace(/^storage_backup_|\.json$/g, '');
  if (!id) throw new Fatal(`cannot tell the id of the backup just made: ${r.stdout.slice(0, 300)}`);
  const files = fs.readdirSync(dir).filter((f) => !f.startsWith('.'));
  return { backupDir, id, dir, files, bytes: files.reduce((n, f) => n + fs.statSync(path.join(dir, f)).size, 0) };
}

// ---------------------------------------------------------------------------------------------
// the two clients

let lib;
async function loadLib() {
  const dist = path.join(path.resolve(process.env.BENCH_DIST ?? path.join(root, 'dist')), 'remote');
  if (!fs.existsSync(path.join(dist, 'registry.js'))) throw new Fatal(`${dist}/registry.js is missing: run npm run build first`);
  const registry = await import(pathToFileURL(path.join(dist, 'registry.js')).href);
  const transfer = await import(pathToFileURL(path.join(dist, 'transfer.js')).href);
  lib = { openRemoteDefinition: registry.openRemoteDefinition, downloadBackup: transfer.downloadBackup };
}

/** Our remote definitions (as in remote_storage.json) and rclone's env-configured remote, per server. */
function clients(server) {
  if (server.kind === 'webdav') {
    const base = `http://127.0.0.1:${server.port}`;
    return {
      def: (sub) => ({ name: `bench-webdav`, url: `webdav://127.0.0.1:${server.port}/${sub}`, enabled: true, options: { username: USER, password: PASS } }),
      rcloneEnv: {
        RCLONE_CONFIG_BENCH_TYPE: 'webdav',
        RCLONE_CONFIG_BENCH_URL: base,
        RCLONE_CONFIG_BENCH_VENDOR: 'other',
        RCLONE_CONFIG_BENCH_USER: USER,
        RCLONE_CONFIG_BENCH_PASS: execFileSync('rclone', ['obscure', PASS], { encoding: 'utf8', env: rcloneBaseEnv() }).trim(),
      },
      rclonePath: (sub) => `bench:${sub}`,
    };
  }
  return {
    // '//abs' is an absolute path on the server
    def: (sub) => ({
      name: 'bench-sftp',
      url: `sftp://${server.user}@127.0.0.1:${server.port}/${server.dataDir}/${sub}`,
      enabled: true,
      options: { private_key: server.userKey, known_hosts: server.knownHosts },
    }),
    rcloneEnv: {
      RCLONE_CONFIG_BENCH_TYPE: 'sftp',
      RCLONE_CONFIG_BENCH_HOST: '127.0.0.1',
      RCLONE_CONFIG_BENCH_PORT: String(server.port),
      RCLONE_CONFIG_BENCH_USER: server.user,
      RCLONE_CONFIG_BENCH_KEY_FILE: server.userKey,
      RCLONE_CONFIG_BENCH_KNOWN_HOSTS_FILE: server.knownHosts,
    },
    rclonePath: (sub) => `bench:${server.dataDir}/${sub}`,
  };
}

async function withRemote(def, fn) {
  const remote = await lib.openRemoteDefinition(def);
  try {
    return await fn(remote);
  } finally {
    await remote.close();
  }
}

/** Deletes every object under `sub` through the protocol (rclone serve caches listings: never behind its back). */
async function wipe(c, sub) {
  await withRemote(c.def(sub), async (remote) => {
    for (const e of await remote.list('')) await remote.delete(e.path);
  });
}

async function timed(fn) {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function rclone(c, args) {
  const r = await run('rclone', ['copy', ...args], { env: { ...rcloneBaseEnv(), ...c.rcloneEnv } });
  if (r.code !== 0) throw new Error(`rclone copy ${args.join(' ')}: ${tail(r)}`);
  return r.wall;
}

// ---------------------------------------------------------------------------------------------
// measurements

const rows = [];

function row(proto, op, oursLabel, bytes) {
  const r = { proto, op, ours: oursLabel, bytes, oursRuns: [], rcloneRuns: [], errors: [] };
  rows.push(r);
  return r;
}

/** One pair (ours, rclone) per run, alternating which goes first; a failed run is recorded, not fatal. */
async function pair(r, i, ours, theirs) {
  const order = i % 2 === 0 ? [['ours', ours], ['rclone', theirs]] : [['rclone', theirs], ['ours', ours]];
  for (const [who, fn] of order) {
    try {
      const s = await fn();
      (who === 'ours' ? r.oursRuns : r.rcloneRuns).push(s);
    } catch (err) {
      r.errors.push(`${who} run ${i + 1}: ${err.message}`);
      log(`  ${r.proto} ${r.op} ${who} run ${i + 1} FAILED: ${err.message}`);
    }
  }
}

async function benchServer(server, payload, backup) {
  const c = clients(server);
  const name = server.kind;
  // the CLI reads its remote from a remotes config file, as a user runs it; secrets in it: mode 0600
  const configFile = path.join(tmp, `remotes-${name}.json`);
  const def = c.def('ours-sync');
  fs.writeFileSync(configFile, JSON.stringify({ remotes: { [def.name]: { url: def.url, ...def.options } } }, null, 2), { mode: 0o600 });
  fs.chmodSync(configFile, 0o600);

  const upFile = row(name, `upload ${MB} MB file`, 'Remote.put', payload.bytes);
  const downFile = row(name, `download ${MB} MB file`, 'Remote.get', payload.bytes);
  const upBackup = row(name, `upload backup (${backup.files.length} files)`, '`vertex-backup sync`', backup.bytes);
  const downBackup = row(name, `download backup (${backup.files.length} files)`, 'downloadBackup', backup.bytes);
  const rel = path.basename(payload.file);
  const dl = path.join(tmp, 'dl');

  // untimed warm-up: the client library's first import and the first login are not throughput
  for (const sub of ['ours', 'ours-sync']) await withRemote(c.def(sub), (remote) => remote.stat('none'));

  for (let i = 0; i < RUNS; i++) {
    log(`${name}: run ${i + 1}/${RUNS}`);
    // -- the large file: up, then down, then the remote copies go
    await pair(
      upFile,
      i,
      () => timed(() => withRemote(c.def('ours'), (remote) => remote.put(rel, payload.file))),
      () => rclone(c, [payload.file, c.rclonePath('rc')]),
    );
    rm(dl);
    fs.mkdirSync(dl, { recursive: true });
    await pair(
      downFile,
      i,
      async () => {
        const out = path.join(dl, 'ours.bin');
        const s = await timed(() => withRemote(c.def('ours'), (remote) => remote.get(rel, out)));
        checkCopy(out, payload, i);
        return s;
      },
      async () => {
        const s = await rclone(c, [`${c.rclonePath('rc')}/${rel}`, path.join(dl, 'rc')]);
        checkCopy(path.join(dl, 'rc', rel), payload, i);
        return s;
      },
    );
    rm(dl);
    await wipe(c, 'ours');
    await wipe(c, 'rc');

    // -- the backup: `vertex-backup sync` vs rclone copy of the same files, then downloads
    await pair(
      upBackup,
      i,
      async () => {
        const r = await run(process.execPath, [cli, 'sync', '--remote', def.name, '--remotes-config', configFile, '--backup-dir', backup.backupDir, '--json']);
        if (r.code !== 0) throw new Error(`vertex-backup sync: ${tail(r)}`);
        const doc = JSON.parse(r.stdout);
        const sent = doc.remotes?.[0]?.result?.bytes;
        if (sent !== backup.bytes) throw new Error(`vertex-backup sync sent ${sent} bytes, the backup has ${backup.bytes}`);
        return r.wall;
      },
      () => rclone(c, [backup.dir, c.rclonePath('rc-sync/storage')]),
    );
    fs.mkdirSync(dl, { recursive: true });
    await pair(
      downBackup,
      i,
      async () => {
        const dest = path.join(dl, 'ours');
        const s = await timed(() => withRemote(c.def('ours-sync'), (remote) => lib.downloadBackup(remote, 'storage', backup.id, dest)));
        const got = sizeOf(path.join(dest, 'storage'));
        if (got !== backup.bytes) throw new Error(`downloadBackup wrote ${got} bytes, ${backup.bytes} expected`);
        return s;
      },
      async () => {
        const dest = path.join(dl, 'rc');
        const s = await rclone(c, [c.rclonePath('rc-sync/storage'), dest]);
        const got = sizeOf(dest);
        if (got !== backup.bytes) throw new Error(`rclone copied ${got} bytes back, ${backup.bytes} expected`);
        return s;
      },
    );
    rm(dl);
    await wipe(c, 'ours-sync');
    await wipe(c, 'rc-sync');
  }
}

function checkCopy(file, payload, i) {
  const size = sizeOf(file);
  if (size !== payload.bytes) throw new Error(`${file} is ${size} bytes, ${payload.bytes} expected`);
  if (i === 0 && sha256File(file) !== payload.sha256) throw new Error(`${file} differs from the payload (sha256)`);
}

// ---------------------------------------------------------------------------------------------
// report

function summarize(r) {
  const ours = median(r.oursRuns);
  const theirs = median(r.rcloneRuns);
  const oursMBs = r.bytes / 1e6 / ours;
  const rcloneMBs = r.bytes / 1e6 / theirs;
  const ratio = oursMBs / rcloneMBs;
  const complete = r.oursRuns.length === RUNS && r.rcloneRuns.length === RUNS;
  const result = !Number.isFinite(ratio) ? 'n/a' : ratio >= TARGET ? 'PASS' : 'FAIL';
  return { ...r, oursS: ours, rcloneS: theirs, oursMBs, rcloneMBs, ratio, complete, result };
}

function table(sums) {
  const lines = [
    `| protocol | operation | ours | ours s | ours MB/s | rclone s | rclone MB/s | ratio | target | result |`,
    `| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |`,
  ];
  for (const s of sums) {
    lines.push(
      `| ${s.proto} | ${s.op} | ${s.ours} | ${fmt(s.oursS, 2)} | ${fmt(s.oursMBs, 0)} | ${fmt(s.rcloneS, 2)} | ${fmt(s.rcloneMBs, 0)} | ${fmt(s.ratio, 2)} | ≥ ${TARGET.toFixed(2)} | ${s.result}${s.complete ? '' : ' (runs failed)'} |`,
    );
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const missing = ['rclone', 'ssh-keygen'].filter((t) => !has(t));
  if (!fs.existsSync('/usr/sbin/sshd')) missing.push('/usr/sbin/sshd');
  if (missing.length) throw new Fatal(`needed but not installed: ${missing.join(', ')} (apt-get install rclone openssh-server)`);
  if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) throw new Fatal('dist/ is missing: run npm run build first');
  await loadLib();
  fs.mkdirSync(rcloneCache, { recursive: true });
  const rcloneVersion = execFileSync('rclone', ['version'], { encoding: 'utf8', env: rcloneBaseEnv() }).split('\n')[0];

  log(`payload: ${MB} MB incompressible file, and a storage backup of ~100 small files + 2 × ${Math.floor(MB / 2)} MB (in ${tmp})`);
  const payload = { file: path.join(tmp, 'payload.bin'), bytes: MB * 1e6 };
  await writeRandomFile(payload.file, payload.bytes);
  payload.sha256 = sha256File(payload.file);
  const backup = await makeBackup();
  log(`backup ${backup.id}: ${backup.files.join(', ')} (${fmt(backup.bytes / 1e6, 1)} MB)`);

  const problems = [];
  const servers = [];
  for (const [kind, start] of [['webdav', startRcloneWebdav], ['sftp', startSshd]]) {
    if (ONLY && !ONLY.has(kind)) continue;
    try {
      const s = await start();
      servers.push(s);
      log(`${kind} server on 127.0.0.1:${s.port}`);
    } catch (err) {
      problems.push(`${kind} server could not start: ${err.message}`);
      log(problems.at(-1));
    }
  }
  for (const s of servers) {
    try {
      await benchServer(s, payload, backup);
    } catch (err) {
      problems.push(`${s.kind}: ${err.message}`);
      log(problems.at(-1));
    }
  }

  const sums = rows.map(summarize);
  for (const s of sums) if (s.errors.length) problems.push(...s.errors.map((e) => `${s.proto} ${s.op}: ${e}`));
  const md = table(sums);
  const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
  process.stdout.write(
    `\n## Remote throughput (median of ${RUNS} runs, MB = 10^6 bytes)\n\n${md}\n\n` +
      `ratio = ours MB/s ÷ rclone MB/s. WebDAV server: rclone serve webdav (basic auth); SFTP server: OpenSSH sshd, internal-sftp.\n` +
      `${rcloneVersion}, node ${process.version}, ${os.cpus().length} CPUs, load average ${load}.\n`,
  );
  const doc = {
    date: new Date().toISOString(),
    runs: RUNS,
    payloadMb: MB,
    backup: { id: backup.id, files: backup.files, bytes: backup.bytes },
    rclone: rcloneVersion,
    node: process.version,
    cpus: os.cpus().length,
    loadavg: os.loadavg(),
    target: TARGET,
    rows: sums.map(({ proto, op, ours, bytes, oursRuns, rcloneRuns, oursS, rcloneS, oursMBs, rcloneMBs, ratio, result, errors }) => ({
      proto,
      op,
      ours,
      bytes,
      oursSeconds: oursRuns,
      rcloneSeconds: rcloneRuns,
      oursMedianS: oursS,
      rcloneMedianS: rcloneS,
      oursMBs,
      rcloneMBs,
      ratio,
      result,
      errors,
    })),
    problems,
  };
  fs.writeFileSync(path.join(here, 'remote-results.json'), `${JSON.stringify(doc, null, 2)}\n`);
  log(`wrote ${path.join(here, 'remote-results.json')}`);
  if (problems.length) {
    log(`\nsome measurements could not run:\n- ${problems.join('\n- ')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    cleanup();
    process.exit(code);
  },
  (err) => {
    log(`bench/remote.mjs: ${err instanceof Fatal ? err.message : err.stack ?? err}`);
    cleanup();
    process.exit(1);
  },
);
