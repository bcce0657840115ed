/**
 * Issue 30: random hostile input from someone who can write the backup directory: manifests, sidecars,
 * restore journals and age headers. `ls`, `verify`, `restore --target` and `check` must each end within
 * a time bound and a memory bound, with a documented exit code and no stack trace, and nothing outside
 * the target may change. FAULT_SEED replays a run; FAULT_TRIALS=full runs more rounds.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { parseHeader } from '../../src/crypto/age-header.js';
import { BackupError } from '../../src/errors.js';
import { BIN, baseEnv } from '../helpers/cli.js';
import { makeApp, rmrf, snapshot } from '../helpers/fixtures.js';
import { cli, json, rng, show, tempDir, trials } from '../helpers/faults.js';

const cleanup: string[] = [];
afterAll(() => {
  for (const d of cleanup) rmrf(d);
});

const MAX_RSS_KB = 300 * 1024;
const STEP_MS = 20_000;

function mutate(buf: Buffer, r: ReturnType<typeof rng>): Buffer {
  const b = Buffer.from(buf);
  const kind = r.int(0, 5);
  if (kind === 0 && b.length) for (let i = r.int(1, 8); i > 0; i--) b[r.int(0, b.length - 1)] = r.int(0, 255);
  if (kind === 1) return b.subarray(0, r.int(0, b.length));
  if (kind === 2) return Buffer.concat([b.subarray(0, r.int(0, b.length)), Buffer.alloc(r.int(1, 200_000), r.pick(['a', '\0', '\t', '/', '{', ':']))]);
  if (kind === 3) return randomBytes(r.int(0, 4096));
  if (kind === 4) {
    const s = b.toString('latin1');
    const at = r.int(0, s.length);
    return Buffer.from(s.slice(0, at) + r.pick(['../', '/etc/', '\0', '"path":"../x",', '"mt":"abc",', '"s":-1,', '"o":"../../y",', 'a://u:'.repeat(5000)]) + s.slice(at), 'latin1');
  }
  return b;
}

/** Mutates the records of a manifest (kept a valid gzip with its checksum) or its raw bytes. */
function fuzzManifest(backupDir: string, id: string, r: ReturnType<typeof rng>): void {
  const dir = path.join(backupDir, 'storage');
  const sidecarFile = path.join(dir, `storage_backup_${id}.json`);
  const sc = JSON.parse(fs.readFileSync(sidecarFile, 'utf8'));
  const file = path.join(dir, sc.manifest.file);
  const raw = zlib.gunzipSync(fs.readFileSync(file));
  const gz = r.next() < 0.2 ? mutate(fs.readFileSync(file), r) : zlib.gzipSync(mutate(raw, r));
  fs.writeFileSync(file, gz);
  if (r.next() < 0.8) sc.manifest.checksum = createHash('sha256').update(gz).digest('hex');
  fs.writeFileSync(sidecarFile, JSON.stringify(sc));
}

function fuzzSidecar(backupDir: string, id: string, r: ReturnType<typeof rng>): void {
  const sidecarFile = path.join(backupDir, 'storage', `storage_backup_${id}.json`);
  const sc = JSON.parse(fs.readFileSync(sidecarFile, 'utf8'));
  const keys = Object.keys(sc);
  const k = r.pick(keys);
  sc[k] = r.pick([null, -1, 'x'.repeat(100_000), '../../etc/passwd', { a: 1 }, [1, 2], 1e308, 'abc', `a://u:${'p@'.repeat(20_000)}`]);
  fs.writeFileSync(sidecarFile, r.next() < 0.2 ? mutate(Buffer.from(JSON.stringify(sc)), r) : JSON.stringify(sc));
}

function fuzzJournal(backupDir: string, victim: string, r: ReturnType<typeof rng>): void {
  const j = {
    id: r.pick(['x', '../..', 'a'.repeat(300), '20240101_000000']),
    pid: 1,
    started_at: '',
    phase: r.pick(['staging', 'database', 'storage', 'storage-new', 'other']),
    database: r.next() < 0.5 ? { live: r.pick([victim, path.join(victim, 'f'), '/']), savedAs: victim, asideTemp: path.join(victim, 'f') } : undefined,
    storage:
      r.next() < 0.7
        ? { dest: r.pick([victim, '/tmp', '/']), mode: r.pick(['rename', 'contents', 'x']), staging: victim, newTree: victim, previous: `${victim}.gone` }
        : undefined,
  };
  fs.writeFileSync(path.join(backupDir, '.restore-in-progress.json'), r.next() < 0.2 ? mutate(Buffer.from(JSON.stringify(j)), r) : JSON.stringify(j));
}

describe('fuzz: hostile backup directories', () => {
  it('ls, verify, restore and check end in bounded time and memory, with a documented exit code, and change nothing outside', async () => {
    const r = rng('fuzz');
    const app = makeApp({ journalMode: 'delete', events: 100, randomBytes: 8 * 1024 });
    cleanup.push(app.cwd);
    const victim = tempDir('vb-fuzz-victim-');
    cleanup.push(victim);
    fs.writeFileSync(path.join(victim, 'f'), 'keep\n');
    const made = await cli(['create', '--type', 'storage', '--json', ...app.flags], { cwd: app.cwd });
    expect(made.code, show(made)).toBe(0);
    const id = json<{ id: string }>(made).id;
    const pristine = fs.mkdtempSync(path.join(app.cwd, 'pristine-'));
    fs.cpSync(app.backupDir, pristine, { recursive: true });
    const victimBefore = snapshot(victim);
    const storageBefore = snapshot(app.storagePath);
    const rounds = trials(4, 30);
    for (let round = 0; round < rounds; round++) {
      fs.rmSync(app.backupDir, { recursive: true, force: true });
      fs.cpSync(pristine, app.backupDir, { recursive: true });
      const what = r.pick(['manifest', 'sidecar', 'journal', 'manifest']);
      if (what === 'manifest') fuzzManifest(app.backupDir, id, r);
      else if (what === 'sidecar') fuzzSidecar(app.backupDir, id, r);
      else fuzzJournal(app.backupDir, victim, r);
      const target = path.join(app.cwd, `target-${round}`);
      for (const args of [['ls', id], ['verify', id], ['restore', id, '--target', target, '--yes'], ['check']]) {
        const p = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, BIN, ...args, ...app.flags], {
          cwd: app.cwd,
          env: baseEnv(app.cwd),
          encoding: 'utf8',
          timeout: STEP_MS,
          killSignal: 'SIGKILL',
        });
        const label = `round ${round} (${what}, FAULT_SEED=${r.seed}): ${args[0]}\n${p.stdout?.slice(0, 2000)}\n${p.stderr?.slice(0, 2000)}`;
        expect(p.signal, label).toBe(null);
        expect([0, 1, 2, 3], label).toContain(p.status);
        expect(p.stderr, label).not.toMatch(/^\s+at\s|TypeError|RangeError|BigInt|Cannot read properties/m);
        expect(Number(/maxrss=(\d+)/.exec(p.stderr)?.[1]), label).toBeLessThan(MAX_RSS_KB);
      }
      expect(snapshot(victim), `round ${round} (${what})`).toEqual(victimBefore);
      expect(fs.existsSync(`${victim}.gone`)).toBe(false);
      expect(snapshot(app.storagePath), `round ${round} (${what})`).toEqual(storageBefore);
    }
  }, 120_000);

  it('page deltas and database sidecars (point-in-time): list, verify, restore --at and check stay bounded and change nothing outside', async () => {
    const r = rng('fuzz-pit');
    const app = makeApp({ journalMode: 'delete', events: 100, randomBytes: 8 * 1024 });
    cleanup.push(app.cwd);
    const base = await cli(['create', '--type', 'database', '--json', ...app.flags], { cwd: app.cwd });
    expect(base.code, show(base)).toBe(0);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      spawnSync('sqlite3', [app.dbPath, `create table fuzz_${i}(x); insert into fuzz_${i} values (${i});`]);
      const d = await cli(['create', '--type', 'database', '--incremental', '--json', ...app.flags], { cwd: app.cwd });
      expect(d.code, show(d)).toBe(0);
      ids.push(json<{ id: string }>(d).id);
    }
    const dbDir = path.join(app.backupDir, 'database');
    const sidecarOf = (id: string) => path.join(dbDir, `db_backup_${id}.json`);
    const at = JSON.parse(fs.readFileSync(sidecarOf(ids[1]), 'utf8')).snapshot_at as string;
    expect(at, 'a page delta names its moment').toBeTruthy();
    const pristine = fs.mkdtempSync(path.join(app.cwd, 'pristine-'));
    fs.cpSync(app.backupDir, pristine, { recursive: true });
    const liveBefore = createHash('sha256').update(fs.readFileSync(app.dbPath)).digest('hex');
    const rounds = trials(4, 30);
    for (let round = 0; round < rounds; round++) {
      fs.rmSync(app.backupDir, { recursive: true, force: true });
      fs.cpSync(pristine, app.backupDir, { recursive: true });
      const id = r.pick(ids);
      const sc = JSON.parse(fs.readFileSync(sidecarOf(id), 'utf8'));
      const what = r.pick(['delta', 'delta', 'sidecar']);
      if (what === 'delta') {
        const file = path.join(dbDir, sc.backup_path);
        const bytes = mutate(fs.readFileSync(file), r);
        fs.writeFileSync(file, bytes);
        // most rounds keep the sidecar's checksum in step: the reader must judge the content itself
        if (r.next() < 0.7) {
          sc.checksum = createHash('sha256').update(bytes).digest('hex');
          sc.file_size = bytes.length;
          fs.writeFileSync(sidecarOf(id), JSON.stringify(sc));
        }
      } else {
        const k = r.pick(Object.keys(sc));
        sc[k] = r.pick([null, -1, 'x'.repeat(100_000), '../../etc/passwd', { a: 1 }, [1, 2], 1e308, 'abc', 0]);
        fs.writeFileSync(sidecarOf(id), JSON.stringify(sc));
      }
      const target = path.join(app.cwd, `target-${round}`);
      for (const args of [['list'], ['verify', '--all'], ['restore', '--at', at, '--target', target, '--yes'], ['check']]) {
        const p = spawnSync('/usr/bin/time', ['-f', 'maxrss=%M', process.execPath, BIN, ...args, ...app.flags], {
          cwd: app.cwd,
          env: baseEnv(app.cwd),
          encoding: 'utf8',
          timeout: STEP_MS,
          killSignal: 'SIGKILL',
        });
        const label = `round ${round} (${what} of ${id}, FAULT_SEED=${r.seed}): ${args[0]}\n${p.stdout?.slice(0, 2000)}\n${p.stderr?.slice(0, 2000)}`;
        expect(p.signal, label).toBe(null);
        expect([0, 1, 2, 3], label).toContain(p.status);
        expect(p.stderr, label).not.toMatch(/^\s+at\s|TypeError|RangeError|BigInt|Cannot read properties/m);
        expect(Number(/maxrss=(\d+)/.exec(p.stderr)?.[1]), label).toBeLessThan(MAX_RSS_KB);
      }
      expect(createHash('sha256').update(fs.readFileSync(app.dbPath)).digest('hex'), `round ${round}: the live database`).toBe(liveBefore);
    }
  }, 180_000);

  it('random age headers are refused or parsed quickly, never crash', () => {
    const r = rng('fuzz-age');
    const base = Buffer.from(`age-encryption.org/v1\n-> X25519 ${'A'.repeat(43)}\n${'B'.repeat(43)}\n--- ${'C'.repeat(43)}\n`, 'latin1');
    const t0 = performance.now();
    for (let i = 0; i < trials(3000, 30000); i++) {
      const b = mutate(base, r);
      try {
        parseHeader(b);
      } catch (err) {
        expect(err, `FAULT_SEED=${r.seed}`).toBeInstanceOf(BackupError);
      }
    }
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});
