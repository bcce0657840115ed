/**
 * Issue 28, item 2 (quick tier): page deltas encrypted. With BACKUP_RECIPIENTS, create --incremental
 * writes `.db.age` and `.pgdelta.age` (no plaintext page, page hash or delta left in the backup
 * directory); restore --at and restore DELTA-ID rebuild the state with --identity (without it exit 2
 * naming --identity, nothing live touched); verify and drill read the chain with the key; rotate
 * merges an encrypted chain with the key and recipients configured. A plain chain synced to an
 * encrypting remote restores by --at --from and DELTA --from, and drills --from.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run } from '../helpers/cli.js';
import { makeDatabase, rmrf, sha256sum, sqlite, tempDir } from '../helpers/fixtures.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmrf(d);
});

interface Sc {
  snapshot_at?: string;
  created_at: string;
  level: number;
  backup_path: string;
  encryption?: { recipients: string[] };
}

async function setup(runs: number, encrypt: boolean) {
  const cwd = tempDir('vb-pite-');
  dirs.push(cwd);
  const db = path.join(cwd, 'app.db');
  makeDatabase(db, { events: 3000 });
  const key = path.join(cwd, 'key.txt');
  const k = await run(['keygen', '-o', key, '--json'], { cwd });
  expect(k.code, describeRun(k)).toBe(0);
  const recipient = parseJsonStdout<{ recipient: string }>(k).recipient;
  const env: Record<string, string> = {
    DATABASE_PATH: db,
    BACKUP_DIR: path.join(cwd, 'backups'),
    STORAGE_PATH: path.join(cwd, 'storage'),
    // the page hashes of an encrypted chain go to the state directory, not the backup directory
    VERTEX_BACKUP_STATE_DIR: path.join(cwd, 'state'),
  };
  if (encrypt) env.BACKUP_RECIPIENTS = recipient;
  const ids: string[] = [];
  for (let i = 0; i < runs; i++) {
    sqlite(db, `UPDATE clients SET name = 'state ${i}' WHERE id = 1; INSERT INTO scan_events(ts) VALUES(${i});`);
    const r = await run(['create', '--type', 'database', '--incremental', '--json'], { cwd, env });
    expect(r.code, describeRun(r)).toBe(0);
    ids.push(parseJsonStdout<{ id: string }>(r).id);
    await new Promise((res) => setTimeout(res, 1000));
  }
  const sidecar = (id: string) => readJson<Sc>(path.join(env.BACKUP_DIR, 'database', `db_backup_${id}.json`));
  return { cwd, db, env, ids, sidecar, key, recipient };
}

const nameOf = (file: string) => sqlite(file, 'SELECT name FROM clients WHERE id = 1');

describe('encrypted page deltas (issue 28)', () => {
  it('create --incremental with recipients: .db.age and .pgdelta.age; restore, verify and drill need the key and give each state', async () => {
    const { cwd, db, env, ids, sidecar, key, recipient } = await setup(3, true);
    expect(ids.map((id) => sidecar(id).level)).toEqual([0, 1, 2]);
    expect(sidecar(ids[0]).backup_path).toMatch(/\.db\.age$/);
    for (const id of ids.slice(1)) {
      expect(sidecar(id).backup_path).toMatch(/\.pgdelta\.age$/);
      expect(sidecar(id).encryption?.recipients).toEqual([recipient]);
    }
    // nothing in plaintext beside the backups: no copy, no delta, no page hashes
    const names = fs.readdirSync(path.join(env.BACKUP_DIR, 'database'));
    expect(names.filter((n) => !n.endsWith('.json') && !n.endsWith('.age'))).toEqual([]);
    expect(fs.existsSync(path.join(cwd, 'state'))).toBe(true);

    const list = await run(['list', '--type', 'database'], { cwd, env });
    expect(list.code, describeRun(list)).toBe(0);
    expect(list.stdout).toMatch(/restorable from \S+ to \S+: 3 states \(2 page deltas\)/);

    const liveBefore = sha256sum(db);
    const noKey = await run(['restore', '--at', sidecar(ids[1]).snapshot_at!, '--yes'], { cwd, env });
    expect(noKey.code, describeRun(noKey)).toBe(2);
    expect(noKey.stderr).toMatch(/is encrypted .* cannot be read without a key/);
    expect(noKey.stderr).toMatch(/--identity FILE/);
    expect(sha256sum(db)).toBe(liveBefore);

    const t1 = path.join(cwd, 't1');
    const r1 = await run(['restore', '--at', sidecar(ids[1]).snapshot_at!, '--identity', key, '--target', t1, '--yes'], { cwd, env });
    expect(r1.code, describeRun(r1)).toBe(0);
    expect(r1.stdout).toMatch(/level 0 \+ 1 delta/);
    expect(nameOf(path.join(t1, 'app.db'))).toBe('state 1');
    const t2 = path.join(cwd, 't2');
    const r2 = await run(['restore', ids[2], '--identity', key, '--target', t2, '--yes'], { cwd, env });
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(nameOf(path.join(t2, 'app.db'))).toBe('state 2');
    expect(sqlite(path.join(t2, 'app.db'), 'PRAGMA integrity_check')).toBe('ok');
    // no decrypted delta or staging file left behind
    expect(fs.readdirSync(path.join(env.BACKUP_DIR, 'database')).filter((n) => n.includes('.tmp'))).toEqual([]);

    const v = await run(['verify', ids[2], '--identity', key, '--json'], { cwd, env });
    expect(v.code, describeRun(v)).toBe(0);
    const d = await run(['drill', '--type', 'database', '--identity', key, '--json'], { cwd, env, timeoutMs: 120_000 });
    expect(d.code, describeRun(d)).toBe(0);
    expect(parseJsonStdout<{ point_in_time?: { deltas: number } }>(d).point_in_time?.deltas).toBe(2);

    // the next run without recipients starts a plain chain: one chain, one set of recipients
    const plain = await run(['create', '--type', 'database', '--incremental', '--json'], { cwd, env: { ...env, BACKUP_RECIPIENTS: '' } });
    expect(plain.code, describeRun(plain)).toBe(0);
    expect(parseJsonStdout<{ backups: { level: number }[] }>(plain).backups[0].level).toBe(0);
  }, 120_000);

  it('rotate merges an encrypted chain with the key and recipients configured, and leaves it whole without them', async () => {
    const { cwd, env, ids, sidecar, key } = await setup(4, true);
    const day = new Date(Date.now() - 3 * 86_400_000).toISOString().slice(0, 10);
    const times = ['09:50', '10:00', '10:20', '10:40'].map((t) => `${day}T${t}:00.000Z`);
    for (const [i, id] of ids.entries()) {
      const file = path.join(env.BACKUP_DIR, 'database', `db_backup_${id}.json`);
      const sc = readJson<Record<string, unknown>>(file);
      sc.created_at = times[i];
      if (sc.snapshot_at) sc.snapshot_at = times[i];
      fs.writeFileSync(file, `${JSON.stringify(sc, null, 2)}\n`);
    }
    const without = await run(['rotate'], { cwd, env });
    expect(without.code, describeRun(without)).toBe(0);
    expect(without.stderr).toMatch(/not compacted: its deltas are encrypted: merging them needs the key/);
    expect(fs.readdirSync(path.join(env.BACKUP_DIR, 'database')).filter((n) => n.includes(ids[1]))).not.toEqual([]);

    const r = await run(['rotate'], { cwd, env: { ...env, AGE_IDENTITY_FILE: key } });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toMatch(/database page chains: 2 deltas merged into 1 kept state/);
    const merged = sidecar(ids[3]);
    expect(merged.backup_path).toMatch(/\.m\w+\.pgdelta\.age$/);
    const names = fs.readdirSync(path.join(env.BACKUP_DIR, 'database'));
    expect(names.filter((n) => n.includes(ids[1]) || n.includes(ids[2]))).toEqual([]);
    expect(names.filter((n) => !n.endsWith('.json') && !n.endsWith('.age'))).toEqual([]);
    const t = path.join(cwd, 'after-merge');
    const res = await run(['restore', ids[3], '--identity', key, '--target', t, '--yes'], { cwd, env });
    expect(res.code, describeRun(res)).toBe(0);
    expect(nameOf(path.join(t, 'app.db'))).toBe('state 3');
  }, 120_000);

  it('a plain chain on an encrypting remote: restore --at --from, restore DELTA --from and drill --from rebuild each state', async () => {
    const { cwd, env, ids, sidecar, key, recipient } = await setup(3, false);
    const nas = path.join(cwd, 'nas');
    fs.mkdirSync(nas);
    const remotes = path.join(cwd, 'remotes.json');
    fs.writeFileSync(remotes, JSON.stringify({ remotes: { nas: { url: `file://${nas}`, encrypt: { recipients: [recipient] } } } }), { mode: 0o600 });
    const vb = (args: string[]) => run([...args, '--remotes-config', remotes], { cwd, env, timeoutMs: 120_000 });
    const s = await vb(['sync', '--remote', 'nas']);
    expect(s.code, describeRun(s)).toBe(0);
    const onRemote = fs.readdirSync(path.join(nas, 'database'));
    expect(onRemote.filter((n) => n.endsWith('.pgdelta.age'))).toHaveLength(2);
    expect(onRemote.filter((n) => n.endsWith('.pgdelta'))).toEqual([]);

    const lr = await vb(['list', '--remote', 'nas', '--json']);
    expect(lr.code, describeRun(lr)).toBe(0);
    expect(lr.stdout).not.toMatch(/"damaged"/);

    const t1 = path.join(cwd, 'from-at');
    const r1 = await vb(['restore', '--at', sidecar(ids[1]).snapshot_at!, '--from', 'nas', '--identity', key, '--target', t1, '--yes']);
    expect(r1.code, describeRun(r1)).toBe(0);
    expect(nameOf(path.join(t1, 'app.db'))).toBe('state 1');
    const t2 = path.join(cwd, 'from-id');
    const r2 = await vb(['restore', ids[2], '--from', 'nas', '--identity', key, '--target', t2, '--yes']);
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(nameOf(path.join(t2, 'app.db'))).toBe('state 2');
    // the download is gone afterwards
    expect(fs.readdirSync(env.BACKUP_DIR).filter((n) => n.startsWith('.remote-restore-'))).toEqual([]);
    // without the key, as for any backup of an encrypting remote: refused, nothing written
    const noKey = await vb(['restore', ids[2], '--from', 'nas', '--target', path.join(cwd, 'nokey'), '--yes']);
    expect(noKey.code, describeRun(noKey)).not.toBe(0);
    expect(noKey.stderr).toMatch(/encrypted to age1/);
    expect(fs.existsSync(path.join(cwd, 'nokey', 'app.db'))).toBe(false);

    const d = await vb(['drill', '--type', 'database', '--from', 'nas', '--identity', key, '--json']);
    expect(d.code, describeRun(d)).toBe(0);
    expect(parseJsonStdout<{ point_in_time?: { deltas: number } }>(d).point_in_time?.deltas).toBe(2);
  }, 180_000);
});
