import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect, it } from 'vitest';
import { fetchRemoteBackup } from '../../src/ops/restore-fetch.js';
import { syncToRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { retrying } from '../../src/remote/retry.js';
import { describeRemoteContract, ids, makeBackupSet } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

// the operator's own small scripts: a directory copy (written under a temp name, then renamed)
const PUT = ['sh', '-c', 'sleep "$4"; [ -e "$3/broken" ] && exit 1; mkdir -p "$(dirname "$2")" && cp "$1" "$2.tmp" && mv "$2.tmp" "$2"', 'put', '{src}', '{remote_path}'];
const LIST = ['sh', '-c', 'cd "$1" 2>/dev/null || exit 0; find . -type f -printf "%s %P\\n"', 'list', '{root}'];
const GET = ['cat', '{remote_path}'];
const DELETE = ['rm', '-f', '{remote_path}'];

function copyTarget(delay = '0') {
  const root = path.join(tempDir('exec-copy'), 'offsite copy');
  const flags = tempDir('exec-flags');
  const def = (extra: Record<string, unknown> = {}) => ({
    name: 'mirror',
    url: `exec:${root}`,
    enabled: true,
    options: { put: [...PUT, flags, delay], list: LIST, get: GET, delete: DELETE, ...extra },
  });
  return {
    root,
    open: () => openRemoteDefinition(def(), process.env),
    // the put command starts failing, as a copy target that went away
    interrupt: async () => fs.writeFileSync(path.join(flags, 'broken'), ''),
    resume: async () => fs.rmSync(path.join(flags, 'broken'), { force: true }),
  };
}

describeRemoteContract({
  label: 'exec (directory copy script)',
  target: () => copyTarget(),
  interruptible: () => copyTarget('0.3'),
  rotationSets: 3,
});

function open(options: Record<string, unknown>) {
  return openRemoteDefinition({ name: 'custom', url: `exec:${tempDir('exec-x')}`, enabled: true, options }, { ...process.env, XDG_STATE_HOME: tempDir('exec-state') });
}

function localFile(content = 'hello') {
  const f = path.join(tempDir('exec-src'), 'f');
  fs.writeFileSync(f, content);
  return f;
}

it('a put that exits 0 but writes nothing is caught by the listing check', async () => {
  const remote = await open({ put: ['true'], list: LIST });
  const err = (await remote.put('database/a.db', localFile()).catch((e: unknown) => e)) as RemoteError;
  expect(err).toBeInstanceOf(RemoteError);
  expect(err.message).toMatch(/exited 0 but the listing shows no such object/);
});

it('a command that hangs is killed with its whole process group when its timeout passes', async () => {
  const pidFile = path.join(tempDir('exec-hang'), 'pid');
  const remote = retrying(await open({ put: ['sh', '-c', 'sleep 30 & echo $! > "$1"; wait', 'hang', pidFile], timeout_s: 0.5 }), { retries: 0 });
  const t0 = Date.now();
  const err = (await remote.put('database/a.db', localFile()).catch((e: unknown) => e)) as RemoteError;
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(err.message).toMatch(/did not finish within 0.5 s and was killed/);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  await new Promise((r) => setTimeout(r, 100));
  // the grandchild went too (gone, or a zombie where PID 1 does not reap)
  const state = fs.existsSync(`/proc/${pid}/stat`) ? fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] : 'gone';
  expect(['gone', 'Z', 'X']).toContain(state);
});

it('secrets in its environment never reach an error message', async () => {
  const remote = await open({ put: ['sh', '-c', 'echo "denied for $UPLOAD_KEY" >&2; exit 3'], env: { UPLOAD_KEY: 'k3y-VALUE-0123456789' } });
  const err = (await remote.put('database/a.db', localFile()).catch((e: unknown) => e)) as Error;
  expect(err.message).toMatch(/the put command for database\/a.db failed \(exit code 3\): denied for \*\*\*/);
  expect(err.message).not.toContain('k3y-VALUE-0123456789');
});

it('put-only: sync sends once (a state file), restore --from says it cannot read back', async () => {
  const dest = tempDir('exec-putonly');
  const options = { put: ['sh', '-c', 'mkdir -p "$(dirname "$2")" && cp "$1" "$2"', 'put', '{src}', `${dest}/{name}`] };
  const backupDir = tempDir('exec-putonly-local');
  const [id] = ids(1);
  makeBackupSet(backupDir, id!, { dbBytes: 1024, partBytes: [1024] });
  const env = { ...process.env, XDG_STATE_HOME: tempDir('exec-state') };
  const def = { name: 'oneway', url: 'exec:offsite', enabled: true, options };
  const first = await syncToRemote(await openRemoteDefinition(def, env), backupDir, { retries: 0 });
  expect(first.synced.length).toBe(1);
  expect(fs.existsSync(path.join(dest, 'full', `full_backup_${id}.json`))).toBe(true);
  const second = await syncToRemote(await openRemoteDefinition(def, env), backupDir, { retries: 0 });
  expect(second.synced).toEqual([]);
  const err = (await fetchRemoteBackup(await openRemoteDefinition(def, env), id!, tempDir('exec-r'), { retries: 0 }).catch((e: unknown) => e)) as Error;
  expect(err.message).toMatch(/exec remote "oneway" is put-only \(no "get" command\): it cannot read .* back/);
});

it('a command given as a shell string is refused', async () => {
  const err = (await open({ put: 'cp {src} /x' }).catch((e: unknown) => e)) as Error;
  expect(err).toMatchObject({ code: 'USAGE' });
  expect(err.message).toMatch(/"put" must be a command as an array of strings/);
});
