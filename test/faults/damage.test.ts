/**
 * Promise: damage is found. Each trial copies a pristine backup directory, damages one artifact at a
 * random position (flip a byte, truncate, delete a part, break the sidecar JSON, remove a component
 * of a full backup), then: verify names the backup and the reason and exits 3; restore refuses with
 * exit 3 and changes nothing on the live paths.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, fileHash, json, makeCounterDb, makeMedia, rmrf, rng, show, STACK, tempDir, treeDigest, trials } from '../helpers/faults.js';

const TRIALS = trials(10, 60);
const R = rng('damage');

let cwd: string;
let pristine: string;
let dbPath: string;
let storagePath: string;
const ids: Record<string, string> = {};

beforeAll(async () => {
  cwd = tempDir('vb-damage-');
  dbPath = path.join(cwd, 'app.db');
  storagePath = path.join(cwd, 'storage');
  makeCounterDb(dbPath, { journalMode: 'wal', fillerMb: 2, counter: 50 });
  makeMedia(storagePath, { files: 40, bytes: 3 * 1024 * 1024 });
  pristine = path.join(cwd, 'pristine');
  const base = ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', pristine, '--json'];
  for (const [key, args] of [
    ['database', ['create', '--type', 'database']],
    ['storage', ['create', '--type', 'storage']],
    ['split', ['create', '--type', 'storage', '--full', '--split-size', '0.5']],
    ['full', ['create', '--type', 'full']],
  ] as const) {
    const r = await cli([...args, ...base], { cwd });
    expect(r.code, show(r)).toBe(0);
    ids[key] = json(r).id;
    await new Promise((res) => setTimeout(res, 1100)); // distinct ids, so each backup is found alone
  }
  expect(fs.readdirSync(path.join(pristine, 'storage')).filter((n) => n.includes('.part')).length).toBeGreaterThan(2);
});

afterAll(() => rmrf(cwd));

type Kind = 'database' | 'storage' | 'split' | 'full';
type Damage = { what: string; kind: Kind; apply: (dir: string) => void };

function artifactsOf(dir: string, kind: Kind): string[] {
  const id = ids[kind];
  if (kind === 'database') return [path.join(dir, 'database', `db_backup_${id}.db`)];
  const sdir = path.join(dir, 'storage');
  return fs.readdirSync(sdir).filter((n) => n.startsWith(`storage_backup_${id}.`) && !n.endsWith('.json')).sort().map((n) => path.join(sdir, n));
}

function sidecarOf(dir: string, kind: Kind): string {
  const id = ids[kind];
  const t = kind === 'split' ? 'storage' : kind;
  const prefix = { database: 'db_backup_', storage: 'storage_backup_', full: 'full_backup_' }[t];
  return path.join(dir, t, `${prefix}${id}.json`);
}

function pickDamage(): Damage {
  const kind = R.pick<Kind>(['database', 'storage', 'split', 'full']);
  const mode = R.pick(kind === 'full' ? ['remove-db', 'remove-storage', 'remove-db-sidecar', 'sidecar-nul', 'sidecar-truncate', 'flip-component'] : ['flip', 'flip', 'truncate', 'sidecar-nul', 'sidecar-truncate', 'sidecar-checksum', ...(kind === 'split' ? ['delete-part', 'delete-part'] : [])]);
  const pos = R.next();
  return {
    kind,
    what: `${kind}: ${mode} at ${pos.toFixed(4)}`,
    apply: (dir) => {
      const arts = kind === 'full' ? [] : artifactsOf(dir, kind);
      const sc = sidecarOf(dir, kind);
      const anyArt = () => arts[Math.floor(pos * arts.length)];
      switch (mode) {
        case 'flip': {
          // a random byte of a random part
          const f = anyArt();
          const size = fs.statSync(f).size;
          const at = Math.floor(((pos * arts.length) % 1) * size);
          const fd = fs.openSync(f, 'r+');
          const b = Buffer.alloc(1);
          fs.readSync(fd, b, 0, 1, at);
          b[0] ^= 1 << Math.floor(pos * 8);
          fs.writeSync(fd, b, 0, 1, at);
          fs.closeSync(fd);
          break;
        }
        case 'truncate': {
          const f = anyArt();
          fs.truncateSync(f, Math.floor(fs.statSync(f).size * ((pos * 7) % 1)));
          break;
        }
        case 'delete-part':
          fs.rmSync(anyArt());
          break;
        case 'sidecar-nul': {
          // a NUL byte is invalid anywhere in JSON text
          const buf = fs.readFileSync(sc);
          buf[Math.floor(pos * (buf.length - 2))] = 0;
          fs.writeFileSync(sc, buf);
          break;
        }
        case 'sidecar-truncate': {
          const buf = fs.readFileSync(sc);
          fs.writeFileSync(sc, buf.subarray(0, 1 + Math.floor(pos * (buf.length - 3))));
          break;
        }
        case 'sidecar-checksum': {
          const j = JSON.parse(fs.readFileSync(sc, 'utf8'));
          const c = j.checksum as string;
          const i = Math.floor(pos * c.length);
          j.checksum = c.slice(0, i) + (c[i] === '0' ? '1' : '0') + c.slice(i + 1);
          fs.writeFileSync(sc, JSON.stringify(j, null, 2));
          break;
        }
        case 'remove-db':
          fs.rmSync(path.join(dir, 'database', `db_backup_${ids.full}.db`));
          break;
        case 'remove-db-sidecar':
          fs.rmSync(path.join(dir, 'database', `db_backup_${ids.full}.json`));
          break;
        case 'remove-storage':
          for (const n of fs.readdirSync(path.join(dir, 'storage'))) if (n.startsWith(`storage_backup_${ids.full}.tar`)) fs.rmSync(path.join(dir, 'storage', n));
          break;
        case 'flip-component': {
          const f = path.join(dir, 'database', `db_backup_${ids.full}.db`);
          const size = fs.statSync(f).size;
          const fd = fs.openSync(f, 'r+');
          const b = Buffer.alloc(1);
          const at = Math.floor(pos * size);
          fs.readSync(fd, b, 0, 1, at);
          b[0] ^= 0x80;
          fs.writeSync(fd, b, 0, 1, at);
          fs.closeSync(fd);
          break;
        }
        default:
          throw new Error(mode);
      }
    },
  };
}

describe('damage is found', () => {
  it(`${TRIALS} random damages: verify exits 3 naming the backup and the reason; restore exits 3 and changes nothing`, async () => {
    const liveBefore = { db: fileHash(dbPath), tree: treeDigest(storagePath) };
    const tally: Record<string, number> = {};
    for (let t = 0; t < TRIALS; t++) {
      const d = pickDamage();
      const dir = path.join(cwd, `trial-${t}`);
      fs.cpSync(pristine, dir, { recursive: true });
      d.apply(dir);
      const ctx = `trial ${t}: ${d.what} (seed ${R.seed})`;
      tally[d.what.split(' at ')[0]] = (tally[d.what.split(' at ')[0]] ?? 0) + 1;
      const flags = ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', dir];
      const id = ids[d.kind];
      const ref = d.kind === 'split' || d.kind === 'storage' ? sidecarOf(dir, d.kind) : d.kind === 'database' ? path.join(dir, 'database', `db_backup_${id}.db`) : id;

      const v = await cli(['verify', ref, ...flags], { cwd });
      expect(v.code, `${ctx}\n${show(v)}`).toBe(3);
      const out = v.stdout + v.stderr;
      expect(out, `${ctx}: verify does not name the backup`).toContain(id);
      expect(out, `${ctx}: verify gives no reason`).toMatch(/checksum|size|missing|JSON|metadata|integrity|truncat|cannot be read|damaged|incomplete|bytes/i);
      expect(v.stderr, ctx).not.toMatch(STACK);

      const vj = await cli(['verify', ref, '--json', ...flags], { cwd });
      expect(vj.code, ctx).toBe(3);
      const report = json(vj);
      expect(report.ok, ctx).toBe(false);

      const r = await cli(['restore', ref, '--yes', ...flags], { cwd });
      expect(r.code, `${ctx}: restore\n${show(r)}`).toBe(3);
      expect(r.stderr, ctx).toContain(id);
      expect(r.stderr, ctx).not.toMatch(STACK);
      // nothing changed on the live paths, nothing was left beside them
      expect(fileHash(dbPath), `${ctx}: the live database changed`).toBe(liveBefore.db);
      expect(treeDigest(storagePath), `${ctx}: the live tree changed`).toEqual(liveBefore.tree);
      expect(fs.readdirSync(cwd).filter((n) => n.includes('pre-restore') || n.includes('.restore-')), ctx).toEqual([]);
      rmrf(dir);
    }
    console.log(`[faults] damages: ${JSON.stringify(tally)}`);
  });

  it('the undamaged backups still verify and restore (the suite is not refusing everything)', async () => {
    const dir = path.join(cwd, 'ok');
    fs.cpSync(pristine, dir, { recursive: true });
    const flags = ['--db-path', dbPath, '--storage-path', storagePath, '--backup-dir', dir];
    const v = await cli(['verify', '--all', ...flags], { cwd });
    expect(v.code, show(v)).toBe(0);
    const r = await cli(['restore', sidecarOf(dir, 'split'), '--yes', '--target', path.join(cwd, 'restored'), ...flags], { cwd });
    expect(r.code, show(r)).toBe(0);
    expect(treeDigest(path.join(cwd, 'restored', 'storage'))).toEqual(treeDigest(storagePath));
  });
});
