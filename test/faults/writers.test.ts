/**
 * Promise: consistent copies while the application keeps writing. A separate process commits to the
 * database the whole time (WAL and rollback journal, small and large transactions): the copy passes
 * integrity_check and holds a committed prefix of the writer's transactions, 1..max(n) with no gap.
 * And a storage tree that changes under the archiver: the archive stays valid, vanished files are
 * warnings.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, counterState, json, makeCounterDb, makeMedia, rmrf, rng, sh, show, STACK, startCounterWriter, tempDir, trials, waitFor } from '../helpers/faults.js';

const ROUNDS = trials(1, 3);
const R = rng('writers');

let cwd: string;
beforeAll(() => {
  cwd = tempDir('vb-writers-');
});
afterAll(() => rmrf(cwd));

const cases = [
  { mode: 'wal', bulk: 0, name: 'WAL, one-row transactions' },
  { mode: 'wal', bulk: 200, name: 'WAL, 200 KB transactions' },
  { mode: 'delete', bulk: 0, name: 'rollback journal, one-row transactions' },
  { mode: 'delete', bulk: 200, name: 'rollback journal, 200 KB transactions' },
] as const;

describe.each(cases)('create --type database while a writer commits in a tight loop ($name)', ({ mode, bulk }) => {
  it(`${ROUNDS} round(s): finishes, passes integrity_check, holds exactly 1..max(n)`, async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const dir = path.join(cwd, `${mode}-${bulk}-${round}`);
      const db = path.join(dir, 'app.db');
      makeCounterDb(db, { journalMode: mode, fillerMb: 40 });
      const status = path.join(dir, 'writer.status');
      const writer = startCounterWriter(db, status, { bulk });
      try {
        await waitFor(() => fs.existsSync(`${status}.started`), 30_000, 'the writer to commit');
        const before = Number(fs.readFileSync(`${status}.started`, 'utf8')); // committed before the backup started
        const backupDir = path.join(dir, 'backups');
        const r = await cli(['create', '--type', 'database', '--json', '--db-path', db, '--storage-path', dir, '--backup-dir', backupDir], { cwd: dir, timeoutMs: 180_000 });
        expect(r.code, show(r)).toBe(0);
        const copy = json(r).backups[0].files[0] as string;
        const last = await writer.stop();
        const s = counterState(copy);
        const ctx = `${mode}/${bulk}: copy holds ${s.count} rows, 1..${s.max}; writer committed ${before} before and ${last} in all`;
        expect(s.integrity, ctx).toBe('ok');
        expect(s.min, ctx).toBe(s.max === 0 ? 0 : 1);
        expect(s.count, `${ctx}: a gap in the counter`).toBe(s.max);
        expect(s.max, ctx).toBeGreaterThanOrEqual(before);
        expect(s.max, ctx).toBeLessThanOrEqual(last);
        expect(s.fillerBad, `${ctx}: filler rows of a transaction whose counter row is missing`).toBe(0);
        if (bulk) {
          const perTx = sh('sqlite3', [copy, 'SELECT count(*) FROM filler WHERE n > 0']).stdout.trim();
          expect(Number(perTx), ctx).toBe(s.max * bulk);
        }
        // the writer kept committing while the copy was made (not blocked for the whole run)
        expect(last, ctx).toBeGreaterThan(before);
        const v = await cli(['verify', '--all', '--backup-dir', backupDir], { cwd: dir });
        expect(v.code, show(v)).toBe(0);
      } finally {
        await writer.stop().catch(() => 0);
        rmrf(dir);
      }
    }
  });
});

/**
 * Changes the tree as fast as it can: adds files, rewrites some (bigger and smaller), deletes
 * files and whole directories, replaces a directory by a file, until SIGTERM.
 */
const MUTATOR_PY = `
import os, random, shutil, signal, sys
root, seed = sys.argv[1], int(sys.argv[2])
rnd = random.Random(seed)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
open(os.path.join(root, '.mutator-started'), 'w').close()
i = 0
while not stop:
    i += 1
    op = rnd.random()
    d = os.path.join(root, 'd%d' % rnd.randrange(7), 'e%d' % rnd.randrange(3))
    try:
        if op < 0.25:
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, 'new%d.bin' % i), 'wb') as f:
                f.write(os.urandom(rnd.randrange(1, 300000)))
        elif op < 0.5:
            names = os.listdir(d)
            if names:
                os.unlink(os.path.join(d, rnd.choice(names)))
        elif op < 0.7:
            names = os.listdir(d)
            if names:
                p = os.path.join(d, rnd.choice(names))
                with open(p, 'r+b') as f:
                    if rnd.random() < 0.5:
                        f.truncate(rnd.randrange(0, 1000))
                    else:
                        f.seek(0, 2)
                        f.write(os.urandom(rnd.randrange(1, 200000)))
        elif op < 0.8:
            shutil.rmtree(d, ignore_errors=True)
        elif op < 0.85:
            t = os.path.join(root, 'flip%d' % rnd.randrange(3))
            if os.path.isdir(t):
                shutil.rmtree(t, ignore_errors=True)
                open(t, 'w').write('now a file')
            else:
                if os.path.exists(t):
                    os.unlink(t)
                os.makedirs(os.path.join(t, 'sub'), exist_ok=True)
                open(os.path.join(t, 'sub', 'x'), 'w').write('x')
        else:
            os.makedirs(d, exist_ok=True)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError):
        pass
`;

describe('create --type storage while files are added, rewritten and deleted', () => {
  it(`${ROUNDS * 3} runs: exit 0, the archive is valid (verify and GNU tar read it), vanished files are warnings`, async () => {
    const dir = path.join(cwd, 'tree');
    const storage = path.join(dir, 'storage');
    makeMedia(storage, { files: 300, bytes: 60 * 1024 * 1024 });
    const backupDir = path.join(dir, 'backups');
    let warned = 0;
    for (let t = 0; t < ROUNDS * 3; t++) {
      const mut = spawn('python3', ['-c', MUTATOR_PY, storage, String(R.int(1, 1e9))], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      mut.stderr!.on('data', (d) => (err += d));
      const exited = new Promise((r) => mut.on('close', r));
      try {
        await waitFor(() => fs.existsSync(path.join(storage, '.mutator-started')), 10_000, 'the mutator');
        const split = t % 3 === 2 ? ['--split-size', '5'] : [];
        const r = await cli(['create', '--type', 'storage', '--json', ...split, '--db-path', path.join(dir, 'none.db'), '--storage-path', storage, '--backup-dir', backupDir], { cwd: dir });
        const ctx = `run ${t} (seed ${R.seed})`;
        expect(r.code, `${ctx}\n${show(r)}`).toBe(0);
        expect(r.stderr, ctx).not.toMatch(STACK);
        const res = json(r);
        warned += res.warnings.length;
        for (const w of res.warnings as string[]) expect(w, ctx).toMatch(/vanished|changed|skipped|replaced/);
        const v = await cli(['verify', res.id, '--backup-dir', backupDir], { cwd: dir });
        expect(v.code, `${ctx}\n${show(v)}`).toBe(0);
        // the archive's files: not the sidecar, not the file manifest
        const files = (res.backups[0].files as string[]).filter((f) => !f.endsWith('.json') && !f.endsWith('.manifest.gz'));
        const listing = sh('sh', ['-c', `cat ${files.map((f) => `'${f}'`).join(' ')} | tar -tzf - | wc -l`]).stdout.trim();
        expect(Number(listing), ctx).toBeGreaterThan(0);
      } finally {
        mut.kill('SIGTERM');
        await exited;
      }
      expect(err, 'the mutator itself failed').toBe('');
    }
    console.log(`[faults] storage under mutation: ${warned} warnings over ${ROUNDS * 3} runs`);
  });
});
