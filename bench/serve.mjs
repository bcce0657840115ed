#!/usr/bin/env node
// `serve` under load (issue 26): the built binary on a free port over a backup directory of 1,000
// synthetic backups (bench/synthetic-catalog.mjs), driven over loopback with node:http.
//   GET /backups/list  sequentially: median and p95 (target: median ≤ 50 ms)
//   GET /              200 clients at once, a new connection each, ROUNDS times: p99 and errors (target ≤ 1 s, none)
//   RSS of the server: 1 and 15 s after start, 5, 30 and 60 s after the load, and its peak (target: idle < 60 MB)
// Environment: BENCH_SERVE_BACKUPS (default 1000), BENCH_SERVE_CONCURRENCY (200), BENCH_SERVE_ROUNDS (3),
// BENCH_SERVE_LIST_RUNS (50), BENCH_KEEP=1 keeps the directory. Run `npm run build` first.
// The machine may be shared: the load average is printed beside the figures.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { syntheticCatalog } from './synthetic-catalog.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const cli = path.join(here, '..', 'bin', 'vertex-backup.js');
const BACKUPS = Number(process.env.BENCH_SERVE_BACKUPS ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_SERVE_CONCURRENCY ?? 200);
const ROUNDS = Number(process.env.BENCH_SERVE_ROUNDS ?? 3);
const LIST_RUNS = Number(process.env.BENCH_SERVE_LIST_RUNS ?? 50);

const log = (m) => process.stderr.write(`${m}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] : Number.NaN;
};
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(', ');

/** VmRSS and VmHWM of a process, in MB. */
function rss(pid) {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
}

/** One GET on a new connection: status, milliseconds, body length, or the error's code. */
function get(url, pathName, headers) {
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = http.get(`${url}${pathName}`, { headers, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (d) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6, bytes }));
      res.on('error', (err) => resolve({ error: err.code ?? err.message, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    });
    req.on('error', (err) => resolve({ error: err.code ?? err.message, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
  });
}

function vb(args, opts = {}) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', ...opts });
  if (r.status !== 0) throw new Error(`vertex-backup ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function main() {
  if (!fs.existsSync(cli) || !fs.existsSync(path.join(here, '..', 'dist'))) {
    log('run `npm run build` first');
    process.exit(1);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-bench-serve-'));
  const backupDir = path.join(dir, 'backups');
  const config = path.join(dir, 'config.json');
  log(`${BACKUPS} synthetic backups in ${backupDir}`);
  syntheticCatalog(backupDir, BACKUPS);
  // a backup.log of a year of nightly runs, a few of them failed: the page reads its tail
  const lines = [];
  for (let i = 0; i < 2000; i++)
    lines.push(
      JSON.stringify({
        time: new Date(Date.UTC(2023, 0, 1) + i * 3_600_000).toISOString(),
        command: 'create',
        result: i % 97 === 0 ? 'error' : 'ok',
        duration_ms: 1200,
        exit_code: i % 97 === 0 ? 1 : 0,
        ...(i % 97 === 0 ? { error: 'disk full while writing storage_backup' } : { id: 'x' }),
      }),
    );
  fs.writeFileSync(path.join(backupDir, 'backup.log'), `${lines.join('\n')}\n`, { mode: 0o600 });
  const flags = ['--config', config, '--backup-dir', backupDir, '--db-path', path.join(dir, 'app.db'), '--storage-path', path.join(dir, 'storage')];
  const token = JSON.parse(vb(['--config', config, 'token', 'create', '--scope', 'read', '--json'])).token;
  const headers = { authorization: `Bearer ${token}` };
  const cookie = { cookie: `authToken=${token}` };

  const child = spawn(process.execPath, [cli, ...flags, 'serve', '--port', '0', '--max-age', '10000d'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20_000);
    child.stderr.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      }
    });
    child.on('exit', () => reject(new Error(`serve exited: ${err}`)));
  });
  const results = { backups: BACKUPS, load_before: load() };
  try {
    await sleep(1000);
    results.rss_idle_start_mb = rss(child.pid).rss;
    // the server collects once after 10 s without work (src/api/server.ts collectWhenIdle)
    await sleep(14_000);
    results.rss_settled_start_mb = rss(child.pid).rss;

    const first = await get(url, '/backups/list', headers);
    if (first.status !== 200) throw new Error(`GET /backups/list: ${first.status ?? first.error}`);
    results.list_first_ms = first.ms;
    const listMs = [];
    for (let i = 0; i < LIST_RUNS; i++) {
      const r = await get(url, '/backups/list', headers);
      if (r.status !== 200) throw new Error(`GET /backups/list: ${r.status ?? r.error}`);
      listMs.push(r.ms);
    }
    results.list_median_ms = quantile(listMs, 0.5);
    results.list_p95_ms = quantile(listMs, 0.95);
    results.list_bytes = first.bytes;

    const pageMs = [];
    const errors = {};
    for (let round = 0; round < ROUNDS; round++) {
      const all = await Promise.all(Array.from({ length: CONCURRENCY }, () => get(url, '/', cookie)));
      for (const r of all) {
        pageMs.push(r.ms);
        if (r.error || r.status !== 200) errors[r.error ?? r.status] = (errors[r.error ?? r.status] ?? 0) + 1;
      }
    }
    results.page_requests = pageMs.length;
    results.page_p50_ms = quantile(pageMs, 0.5);
    results.page_p99_ms = quantile(pageMs, 0.99);
    results.page_max_ms = Math.max(...pageMs);
    results.page_errors = errors;

    await sleep(5000);
    results.rss_5s_after_load_mb = rss(child.pid).rss;
    // V8 gives the heap of a burst back once the process has been idle a while (its memory reducer)
    await sleep(25_000);
    results.rss_30s_after_load_mb = rss(child.pid).rss;
    await sleep(30_000);
    const settled = rss(child.pid);
    results.rss_idle_after_load_mb = settled.rss;
    results.rss_peak_mb = settled.peak;
    results.load_after = load();
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    if (!process.env.BENCH_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  }
  const f = (x) => (typeof x === 'number' ? x.toFixed(1) : x);
  const errCount = Object.values(results.page_errors).reduce((a, b) => a + b, 0);
  console.log(`serve bench: ${BACKUPS} backups; load average ${results.load_before} before, ${results.load_after} after
| measure | value | target |
| --- | --- | --- |
| GET /backups/list, first (cold) | ${f(results.list_first_ms)} ms | |
| GET /backups/list, median of ${LIST_RUNS} | ${f(results.list_median_ms)} ms | ≤ 50 ms |
| GET /backups/list, p95 | ${f(results.list_p95_ms)} ms | |
| GET /, ${CONCURRENCY} at once × ${ROUNDS}: p50 | ${f(results.page_p50_ms)} ms | |
| GET /, ${CONCURRENCY} at once × ${ROUNDS}: p99 | ${f(results.page_p99_ms)} ms | ≤ 1000 ms |
| GET /, errors | ${errCount ? JSON.stringify(results.page_errors) : 'none'} | none |
| RSS 1 s after start | ${f(results.rss_idle_start_mb)} MB | |
| RSS idle 15 s after start | ${f(results.rss_settled_start_mb)} MB | < 60 MB |
| RSS 5 s after the load | ${f(results.rss_5s_after_load_mb)} MB | |
| RSS 30 s after the load | ${f(results.rss_30s_after_load_mb)} MB | |
| RSS idle 60 s after the load | ${f(results.rss_idle_after_load_mb)} MB | < 60 MB |
| RSS peak | ${f(results.rss_peak_mb)} MB | |`);
  if (process.env.BENCH_SERVE_JSON) fs.writeFileSync(process.env.BENCH_SERVE_JSON, `${JSON.stringify(results, null, 2)}\n`);
}

main().catch((e) => {
  log(e.stack ?? String(e));
  process.exit(1);
});
