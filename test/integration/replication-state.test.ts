import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { listBackups } from '../../src/catalog/local-store.js';
import { lagFromRecord, recordReplication } from '../../src/catalog/replication.js';
import { readStatus } from '../../src/catalog/status.js';
import { replicationState } from '../../src/ops/replication.js';
import { syncRemote } from '../../src/ops/sync.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { checkBackups } from '../../src/ops/check.js';
import { REPO, describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { startRecorder } from '../helpers/http-recorder.js';
import { ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

// an exec remote whose every command first appends its name to a log: one line per request
function countedCopy() {
  const root = path.join(tempDir('repl-copy'), 'offsite');
  const log = path.join(tempDir('repl-log'), 'requests');
  fs.writeFileSync(log, '');
  const counted = (name: string, script: string) => ['sh', '-c', `echo ${name} >> "$LOG"; ${script}`, name];
  const options = {
    put: [...counted('put', 'mkdir -p "$(dirname "$2")" && cp "$1" "$2.tmp" && mv "$2.tmp" "$2"'), '{src}', '{remote_path}'],
    list: [...counted('list', 'cd "$1" 2>/dev/null || exit 0; find . -type f -printf "%s %P\\n"'), '{root}'],
    get: [...counted('get', 'cat "$1"'), '{remote_path}'],
    delete: [...counted('delete', 'rm -f "$1"'), '{remote_path}'],
    env: { LOG: log },
  };
  const def = { name: 'mirror', url: `exec:${root}`, enabled: true, options };
  let opened = 0;
  return {
    where: { name: 'mirror', url: def.url },
    open: () => {
      opened++;
      return openRemoteDefinition(def, process.env);
    },
    requests: () => fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).length,
    opened: () => opened,
    reset: () => fs.writeFileSync(log, ''),
  };
}

it('an unchanged sync of 30 full backups opens no connection and makes no request; --refresh lists again; a new backup costs only its own', async () => {
  const backupDir = tempDir('repl-local');
  for (const id of ids(30)) makeBackupSet(backupDir, id, { dbBytes: 512, partBytes: [512] });
  const r = countedCopy();
  const first = await syncRemote(r.open, r.where, backupDir, { retries: 0 });
  expect(first.synced.length).toBe(30);
  const firstRequests = r.requests();
  expect(firstRequests).toBeGreaterThan(30);
  const { status } = await readStatus(backupDir);
  expect(status?.replication?.mirror).toMatchObject({ lag_seconds: 0, missing: 0, last_sync: { ok: true } });
  expect(status?.replication?.mirror?.held.length).toBe(90);

  r.reset();
  const opensBefore = r.opened();
  const second = await syncRemote(r.open, r.where, backupDir, { retries: 0 });
  expect(second).toMatchObject({ cached: true, synced: [], upToDate: 30, lagSeconds: 0 });
  expect(r.requests()).toBe(0);
  expect(r.opened()).toBe(opensBefore);
  console.log(`requests for 30 full backups on an exec remote: first sync ${firstRequests}, unchanged sync ${r.requests()}`);

  const refreshed = await syncRemote(r.open, r.where, backupDir, { retries: 0, refresh: true });
  expect(refreshed.cached).toBeUndefined();
  expect(refreshed.synced).toEqual([]);
  expect(r.requests()).toBeGreaterThan(0);

  // one more backup: only it is looked at and sent
  r.reset();
  makeBackupSet(backupDir, ids(1, 2)[0]!, { dbBytes: 512, partBytes: [512] });
  const third = await syncRemote(r.open, r.where, backupDir, { retries: 0 });
  expect(third.synced.map((s) => s.id)).toEqual([ids(1, 2)[0]]);
  expect(r.requests()).toBeLessThan(firstRequests / 10);
});

it('the lag comes from the record without a connection, grows as local backups go unsent, and a refresh corrects a stale record', async () => {
  const backupDir = tempDir('repl-lag');
  const [a, b, c] = ids(3);
  for (const id of [a!, b!]) makeBackupSet(backupDir, id, { dbBytes: 256, partBytes: [256] });
  const r = countedCopy();
  await syncRemote(r.open, r.where, backupDir, { retries: 0 });
  makeBackupSet(backupDir, c!, { dbBytes: 256, partBytes: [256] });
  const cTime = Date.parse((await listBackups(backupDir)).find((e) => e.id === c)!.createdAt.toISOString());
  const now = new Date(cTime + 3 * 3600_000);
  const never = () => Promise.reject(new Error('must not connect'));
  const s = await replicationState(never, r.where, backupDir, { now });
  expect(s).toMatchObject({ listed: false, lagSeconds: 3 * 3600, missing: 3, newestMissing: `full:${c}` });

  // copies deleted on the remote behind our back: the record is stale until a refresh lists it
  fs.rmSync(path.join(r.where.url.slice('exec:'.length), 'full', `full_backup_${b}.json`));
  const stale = await replicationState(never, r.where, backupDir, { now });
  expect(stale.missing).toBe(3);
  const fresh = await replicationState(r.open, r.where, backupDir, { now, refresh: true });
  expect(fresh).toMatchObject({ listed: true, missing: 4 });
  // recorded: the next check without --refresh sees what the listing saw
  expect((await replicationState(never, r.where, backupDir, { now })).missing).toBe(4);

  // the record belongs to the URL: the same name pointed elsewhere has no record, so it is listed
  const moved = await replicationState(r.open, { name: 'mirror', url: `${r.where.url}-elsewhere` }, backupDir, { now }).catch((e: Error) => e);
  expect(moved).not.toBeInstanceOf(Error);
  const { status } = await readStatus(backupDir);
  expect(lagFromRecord(await listBackups(backupDir), status!.replication!.mirror!, now).missing.length).toBe(fresh.missing);
});

it('status.json loses nothing when several processes change it at once (runs, starts and replication records)', async () => {
  // real processes importing the built modules: each records its own run and its own remote many times
  const dir = tempDir('repl-race');
  const script = path.join(tempDir('repl-racer'), 'racer.mjs');
  fs.writeFileSync(
    script,
    `const [,, dir, n, t0] = process.argv;
const { recordRun, recordStart } = await import(${JSON.stringify(path.join(REPO, 'dist/catalog/status.js'))});
const { recordReplication } = await import(${JSON.stringify(path.join(REPO, 'dist/catalog/replication.js'))});
while (Date.now() < Number(t0)) {}
for (let i = 0; i < 15; i++) {
  await recordStart(dir, 'job' + n);
  await recordReplication(dir, 'remote' + n, [], { url: 'file:///r' + n, confirmed: ['full:' + i] });
  await recordRun(dir, { command: 'job' + n, ok: true, exit_code: 0, duration_ms: i });
}
`,
  );
  const racers = 6;
  const t0 = Date.now() + 800;
  const kids = Array.from({ length: racers }, (_, n) => spawn(process.execPath, [script, dir, String(n), String(t0)], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const errors: string[] = [];
  for (const k of kids) k.stderr!.on('data', (d: Buffer) => errors.push(d.toString()));
  const codes = await Promise.all(kids.map((k) => new Promise((res) => k.on('close', res))));
  expect(errors.join('')).toBe('');
  expect(codes).toEqual(Array(racers).fill(0));
  const { status, error } = await readStatus(dir);
  expect(error).toBeUndefined();
  for (let n = 0; n < racers; n++) {
    expect(status!.runs[`job${n}`], `run of racer ${n}`).toMatchObject({ duration_ms: 14 });
    expect(status!.replication?.[`remote${n}`]?.held.length, `replication record of racer ${n}`).toBe(15);
  }
  expect(status!.started ?? {}).toEqual({});
});

it('the lag everywhere: sync summary and notification name the remote behind and by how much; metrics, status.json and check (without a connection) agree', async () => {
  const dir = tempDir('repl-everywhere');
  const backupDir = path.join(dir, 'backups');
  const stamp = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  const hoursAgo = (h: number) => stamp(new Date(Date.now() - h * 3_600_000));
  makeBackupSet(backupDir, hoursAgo(30), { dbBytes: 256, partBytes: [256] });
  const cfg = path.join(dir, 'remote_storage.json');
  fs.writeFileSync(cfg, JSON.stringify({ remotes: { nas: { url: `file://${path.join(dir, 'nas')}` }, usb: { url: `file://${path.join(dir, 'usb')}` } } }));
  const metrics = path.join(dir, 'vertex.prom');
  const hook = await startRecorder();
  try {
    const env = { REMOTES_CONFIG: cfg, NOTIFY_ON: 'failure', NOTIFY_WEBHOOK_URL: `${hook.url}/hook`, NOTIFY_RETRIES: '0' };
    const opts = { cwd: dir, env };
    const flags = ['--backup-dir', backupDir, '--metrics-file', metrics];
    const first = await run([...flags, 'sync', '--retries', '0'], opts);
    expect(first.code, describeRun(first)).toBe(0);
    // a new backup, and the usb disk is gone (a file where its directory was)
    makeBackupSet(backupDir, hoursAgo(2), { dbBytes: 256, partBytes: [256] });
    fs.rmSync(path.join(dir, 'usb'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'usb'), 'not a directory');
    const second = await run([...flags, 'sync', '--retries', '0'], opts);
    expect(second.code, describeRun(second)).toBe(1);
    expect(second.stderr).toMatch(/usb: 2h \d+m behind, 3 complete backups missing there/);
    const [note] = await hook.waitFor(1, 10_000);
    expect(note!.body).toMatch(/sync failed for usb .*; usb is 2h \d+m behind \(3 backups missing\)/);
    expect(note!.body).not.toMatch(/nas is/);

    const prom = fs.readFileSync(metrics, 'utf8');
    const sample = (remote: string) => Number(new RegExp(`^vertex_backup_replication_lag_seconds\\{remote="${remote}"\\} (\\S+)$`, 'm').exec(prom)?.[1]);
    expect(sample('nas')).toBe(0);
    expect(Math.abs(sample('usb') - 2 * 3600)).toBeLessThan(120);
    expect(prom).toMatch(/^vertex_backup_replication_last_sync_success\{remote="usb"\} 0$/m);
    const status = JSON.parse(fs.readFileSync(path.join(backupDir, 'status.json'), 'utf8'));
    expect(status.replication.usb).toMatchObject({ missing: 3, last_sync: { ok: false } });
    expect(status.runs.sync).toMatchObject({ ok: false, exit_code: 1 });

    // check reads the records: with both remotes unreachable now it still answers, and turns red on usb only
    fs.rmSync(path.join(dir, 'nas'), { recursive: true });
    const check = await run(['--backup-dir', backupDir, '--json', 'check', '--max-age', '26h', '--max-replication-lag', '1h'], opts);
    expect(check.code, describeRun(check)).toBe(1);
    const doc = parseJsonStdout<{ reasons: string[]; replication: { remote: string; ok: boolean; listed: boolean }[] }>(check);
    expect(doc.replication.map((x) => `${x.remote}:${x.ok}:${x.listed}`)).toEqual(['nas:true:false', 'usb:false:false']);
    expect(doc.reasons.join('\n')).toMatch(/replication to usb is 2h \d+m behind \(limit 1h 0m\): 3 backups missing there/);
    // --refresh lists: nas is gone now, which only a listing can tell
    const refreshed = await run(['--backup-dir', backupDir, '--json', 'check', '--max-age', '26h', '--max-replication-lag', '1h', '--remote', 'nas', '--refresh'], opts);
    expect(refreshed.code).toBe(1);
    expect(parseJsonStdout<{ reasons: string[] }>(refreshed).reasons.join('\n')).toMatch(/replication to nas is 1d 6h behind/);

    // what serve's /backups/check answers: the records, judged against BACKUP_CHECK_MAX_REPLICATION_LAG
    const api = await checkBackups({ backupDir, maxAgeMs: 26 * 3600_000, types: ['full'], includeOtherRuns: false, maxReplicationLagMs: 3600_000 });
    expect(api.replication?.map((x) => `${x.remote}:${x.ok}`)).toEqual(['nas:false', 'usb:false']);
  } finally {
    await hook.close();
  }
});
