/**
 * What a ustar header field cannot hold. Files dated before 1970 or after 2038 exist on real servers
 * (camera clocks, unpacked zips, a clock that was wrong for a day): GNU tar must read their times from
 * our archives and our restore must put them back, with names that are not UTF-8 and names too long
 * for the header too. The same for owners with big ids (directory services hand out uids in the millions).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run, sh } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

let cwd: string;
beforeAll(() => {
  cwd = tempDir('vb-times-');
});
afterAll(() => rmrf(cwd));

const LONG = `${'long'.repeat(30)}.jpg`;
// name (bytes, relative to the tree) -> seconds since the epoch
const DATED: [Buffer, number][] = [
  [Buffer.from('old-1960.jpg'), -315_575_999],
  [Buffer.from('caf\xe9-1969.jpg', 'latin1'), -1000],
  [Buffer.from('epoch.jpg'), 0],
  [Buffer.from('y2040.jpg'), 2_219_443_200],
  [Buffer.from('y2300.jpg'), 10_413_792_000],
  [Buffer.from(LONG), 10_413_792_000],
];

function makeTree(root: string): void {
  fs.mkdirSync(root, { recursive: true });
  for (const [name, seconds] of DATED) {
    const p = Buffer.concat([Buffer.from(`${root}/`), name]);
    fs.writeFileSync(p, `content of ${name.toString('latin1')}`);
    fs.utimesSync(p, new Date(seconds * 1000), new Date(seconds * 1000)); // Node takes a negative number for "now"
  }
  const link = Buffer.from(`${root}/link-\xff`, 'latin1');
  fs.symlinkSync(Buffer.from('caf\xe9-1969.jpg', 'latin1'), link);
  fs.lutimesSync(link, new Date(-5_000_000), new Date(-5_000_000));
}

/** name (latin1 string of its bytes) -> whole seconds, for every entry under root */
function times(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of fs.readdirSync(root, { encoding: 'buffer' })) {
    const st = fs.lstatSync(Buffer.concat([Buffer.from(`${root}/`), name]), { bigint: true });
    out[name.toString('latin1')] = Number(st.mtimeNs / 1_000_000_000n - (st.mtimeNs < 0n && st.mtimeNs % 1_000_000_000n !== 0n ? 1n : 0n));
  }
  return out;
}

describe('times a ustar header cannot hold', () => {
  it('GNU tar lists and extracts the real times; restore of level 0 and level 1 puts them back', async () => {
    const root = path.join(cwd, 'app');
    const storage = path.join(root, 'storage');
    const backupDir = path.join(root, 'backups');
    makeTree(storage);
    const want = times(storage);
    expect(want['y2300.jpg']).toBe(10_413_792_000);
    expect(want['old-1960.jpg']).toBe(-315_575_999);
    const flags = ['--storage-path', storage, '--backup-dir', backupDir];

    const first = await run(['create', '--type', 'storage', '--json', ...flags], { cwd: root });
    expect(first.code, describeRun(first)).toBe(0);
    const id0 = parseJsonStdout<{ id: string }>(first).id;
    const archive = path.join(backupDir, 'storage', `storage_backup_${id0}.tar.gz`);

    // GNU tar, without our tool: no warning about the headers, and the same times
    const extracted = path.join(root, 'gnu');
    fs.mkdirSync(extracted);
    const x = sh('tar', ['-xzf', archive, '-C', extracted]);
    expect(x.stderr).not.toMatch(/base-64|obsolescent|Archive contains/);
    expect(times(path.join(extracted, 'storage'))).toEqual(want);
    const listing = sh('tar', ['--full-time', '-tvzf', archive]).stdout;
    expect(listing).toContain('2300-01-01 00:00:00 storage/y2300.jpg');
    expect(listing).toContain(`2300-01-01 00:00:00 storage/${LONG}`);
    expect(listing).toContain('1960-01-01 12:00:01 storage/old-1960.jpg');
    expect(listing).toContain('2040-05-01 00:00:00 storage/y2040.jpg');

    // a level 1 on top: it holds only the new file, the restore takes the rest from level 0
    fs.writeFileSync(path.join(storage, 'new.jpg'), 'new');
    fs.utimesSync(path.join(storage, 'new.jpg'), new Date(-86_400_000), new Date(-86_400_000));
    const second = await run(['create', '--type', 'storage', '--json', ...flags], { cwd: root });
    expect(second.code, describeRun(second)).toBe(0);
    const wantNow = times(storage);

    for (const [id, expected] of [
      [id0, want],
      ['latest', wantNow],
    ] as const) {
      const target = path.join(root, `restored-${id}`);
      const r = await run(['restore', id, '--target', target, '--yes', ...flags], { cwd: root });
      expect(r.code, describeRun(r)).toBe(0);
      expect(times(path.join(target, 'storage'))).toEqual(expected);
    }
  });
});

// chown needs root; CI runs as root (a non-root run names this test as skipped)
describe.runIf(process.getuid?.() === 0)('owners a ustar header cannot hold (as root)', () => {
  it('uid/gid above 262143 (LDAP, FreeIPA) survive GNU tar and our restore, files and directories, level 0 and 1', async () => {
    const root = path.join(cwd, 'owners');
    const storage = path.join(root, 'storage');
    const backupDir = path.join(root, 'backups');
    fs.mkdirSync(path.join(storage, 'team'), { recursive: true });
    fs.writeFileSync(path.join(storage, 'team', 'photo.jpg'), 'p');
    const latin = Buffer.from(`${storage}/caf\xe9.jpg`, 'latin1');
    fs.writeFileSync(latin, 'c');
    fs.chownSync(path.join(storage, 'team'), 1_234_567, 2_345_678);
    fs.chownSync(path.join(storage, 'team', 'photo.jpg'), 1_234_568, 262_144);
    fs.chownSync(latin, 3_000_000, 4_000_000);
    const owners = (dir: string) => {
      const of = (p: string | Buffer) => {
        const st = fs.lstatSync(p);
        return `${st.uid}:${st.gid}`;
      };
      return { team: of(path.join(dir, 'team')), photo: of(path.join(dir, 'team', 'photo.jpg')), cafe: of(Buffer.from(`${dir}/caf\xe9.jpg`, 'latin1')) };
    };
    const want = owners(storage);
    expect(want).toEqual({ team: '1234567:2345678', photo: '1234568:262144', cafe: '3000000:4000000' });
    const flags = ['--storage-path', storage, '--backup-dir', backupDir];
    const first = await run(['create', '--type', 'storage', '--json', ...flags], { cwd: root });
    expect(first.code, describeRun(first)).toBe(0);
    const id0 = parseJsonStdout<{ id: string }>(first).id;

    const gnu = path.join(root, 'gnu');
    fs.mkdirSync(gnu);
    sh('tar', ['-xzf', path.join(backupDir, 'storage', `storage_backup_${id0}.tar.gz`), '-C', gnu, '--numeric-owner', '--same-owner']);
    expect(owners(path.join(gnu, 'storage'))).toEqual(want);

    fs.writeFileSync(path.join(storage, 'new.jpg'), 'n');
    const second = await run(['create', '--type', 'storage', ...flags], { cwd: root });
    expect(second.code, describeRun(second)).toBe(0);
    for (const id of [id0, 'latest']) {
      const target = path.join(root, `restored-${id}`);
      const r = await run(['restore', id, '--target', target, '--yes', ...flags], { cwd: root });
      expect(r.code, describeRun(r)).toBe(0);
      expect(owners(path.join(target, 'storage'))).toEqual(want);
    }
  });
});
