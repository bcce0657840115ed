/**
 * Issue 24: a volume on a daemon whose mountpoints are not ours to read (a remote daemon, here the real
 * dockerd of test/helpers/docker.ts reached over tcp://127.0.0.1), read through the daemon's archive API
 * into a local mirror (VOLUME_HELPER_IMAGE names an image it already has; nothing is pulled): the backup
 * is the volume's exact tree with owners, the next one stores only what changed (the mirror keeps the
 * inodes of unchanged files), a stop-labelled container still goes down only for the catch-up, and what
 * cannot work this way (no image, a restore in place) is refused with exit 2 and a way forward.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type Dockerd, dockerNeed, startDockerd } from '../helpers/docker.js';
import { rmrf, snapshot, tempDir } from '../helpers/fixtures.js';
import { freePort } from '../helpers/servers.js';

const need = dockerNeed();
const WRITER = `trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.05 & wait $!; done`;

need.describe('Docker volumes read through a remote daemon (helper container, real dockerd over tcp)', () => {
  let d: Dockerd;
  let cwd: string;
  let backupDir: string;
  let mount: string;
  const env = (extra: Record<string, string> = {}) => ({ DOCKER_HOST: d.tcpHost!, VOLUMES: 'appdata', VOLUME_HELPER_IMAGE: 'tiny:latest', DOCKER_STOP_TIMEOUT: '2s', ...extra });
  // the regular files an archive holds (GNU tar's verbose listing: type letter first)
  const filesIn = (id: string) =>
    spawnSync('tar', ['-tvzf', path.join(backupDir, 'volumes', 'appdata', 'storage', `storage_backup_${id}.tar.gz`)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter((l) => l.startsWith('-'))
      .map((l) => l.split(/\s+/).slice(5).join(' '));

  beforeAll(async () => {
    d = await startDockerd({ tcpPort: await freePort() });
    cwd = tempDir('vb-dvh-');
    backupDir = path.join(cwd, 'backups');
    d.docker(['volume', 'create', '--label', 'com.docker.compose.project=app', 'appdata']);
    mount = d.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'appdata']);
    for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(mount, `f${i}.dat`), `data ${i}\n`.repeat(200));
    fs.mkdirSync(path.join(mount, 'sub', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(mount, 'sub', 'deep', 'owned'), 'x');
    fs.chownSync(path.join(mount, 'sub', 'deep', 'owned'), 999, 998);
    fs.chmodSync(path.join(mount, 'sub', 'deep', 'owned'), 0o640);
    fs.symlinkSync('../f1.dat', path.join(mount, 'sub', 'link'));
    fs.writeFileSync(path.join(mount, 'name with spaces & ünïcode'), 'odd');
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
    rmrf(cwd);
  }, 60_000);

  need.it('a remote daemon without VOLUME_HELPER_IMAGE: exit 2, the line says why and what to set', async () => {
    const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir], { cwd, env: env({ VOLUME_HELPER_IMAGE: '' }) });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/volume appdata: its mountpoint .* cannot be read here \(a remote Docker daemon\)/);
    expect(r.stderr).toMatch(/VOLUME_HELPER_IMAGE/);
    const missing = await run(['create', '--type', 'volumes', '--backup-dir', backupDir], { cwd, env: env({ VOLUME_HELPER_IMAGE: 'not-here:1' }) });
    expect(missing.code, describeRun(missing)).toBe(2);
    expect(missing.stderr).toMatch(/no image 'not-here:1' on the Docker daemon/);
    // no reader container is left behind
    expect(d.docker(['ps', '-aq', '--filter', 'label=vertex-backup.helper=true'])).toBe('');
  }, 60_000);

  need.it('backs up the exact tree through the daemon; the next run stores only what changed; restore --target gives it back', async () => {
    const first = await run(['create', '--type', 'volumes', '--backup-dir', backupDir, '--json'], { cwd, env: env(), timeoutMs: 90_000 });
    expect(first.code, describeRun(first)).toBe(0);
    const one = JSON.parse(first.stdout) as { volumes: { id: string; mirror?: string }[] };
    expect(one.volumes[0].mirror).toBeTruthy();
    const t1 = path.join(cwd, 'r1');
    const r1 = await run(['restore', one.volumes[0].id, '--volume', 'appdata', '--target', t1, '--yes', '--backup-dir', backupDir], { cwd, env: env() });
    expect(r1.code, describeRun(r1)).toBe(0);
    expect(snapshot(path.join(t1, 'appdata'))).toEqual(snapshot(mount));
    expect(fs.statSync(path.join(t1, 'appdata', 'sub', 'deep', 'owned'))).toMatchObject({ uid: 999, gid: 998 });

    // same size, new content, within the same second as the copy: caught by the content comparison
    fs.writeFileSync(path.join(mount, 'f3.dat'), `DATA 3\n`.repeat(200));
    fs.rmSync(path.join(mount, 'f4.dat'));
    fs.writeFileSync(path.join(mount, 'sub', 'new.txt'), 'new');
    const second = await run(['create', '--type', 'volumes', '--backup-dir', backupDir, '--json'], { cwd, env: env(), timeoutMs: 90_000 });
    expect(second.code, describeRun(second)).toBe(0);
    const two = JSON.parse(second.stdout) as { volumes: { id: string }[] };
    // only the two changed files are in the new archive: the 38 unchanged ones kept their mirror inodes
    expect(filesIn(one.volumes[0].id).length).toBe(42);
    expect(filesIn(two.volumes[0].id).sort()).toEqual(['appdata/f3.dat', 'appdata/sub/new.txt']);
    const t2 = path.join(cwd, 'r2');
    const r2 = await run(['restore', 'latest', '--volume', 'appdata', '--target', t2, '--yes', '--backup-dir', backupDir], { cwd, env: env() });
    expect(r2.code, describeRun(r2)).toBe(0);
    expect(snapshot(path.join(t2, 'appdata'))).toEqual(snapshot(mount));
    expect(d.docker(['ps', '-aq', '--filter', 'label=vertex-backup.helper=true'])).toBe('');
  }, 180_000);

  need.it('a stop-labelled container: down for the catch-up read only, started again; in-place restore refused with the way to do it', async () => {
    d.docker(['run', '-d', '--name', 'writer', '--network', 'none', '--label', 'vertex-backup.stop=true', '--label', 'com.docker.compose.project=app', '-v', 'appdata:/data', 'tiny:latest', '/bin/sh', '-c', WRITER]);
    const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir, '--json'], { cwd, env: env(), timeoutMs: 90_000 });
    expect(r.code, describeRun(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { volumes: { id: string; passes: unknown[]; containers: { name: string; stopped: boolean; restarted: boolean }[] }[] };
    expect(out.volumes[0].passes.length).toBe(2);
    expect(out.volumes[0].containers).toEqual([expect.objectContaining({ name: 'writer', stopped: true, restarted: true })]);
    expect(d.docker(['inspect', '-f', '{{.State.Running}}', 'writer'])).toBe('true');
    // the catch-up backup holds the counter as the stopped container left it
    d.docker(['stop', 'writer']);
    const t = path.join(cwd, 'r3');
    const rr = await run(['restore', out.volumes[0].id, '--volume', 'appdata', '--target', t, '--yes', '--backup-dir', backupDir], { cwd, env: env() });
    expect(rr.code, describeRun(rr)).toBe(0);
    expect(Number(fs.readFileSync(path.join(t, 'appdata', 'counter'), 'utf8'))).toBeGreaterThan(0);

    const inPlace = await run(['restore', 'latest', '--volume', 'appdata', '--yes', '--backup-dir', backupDir], { cwd, env: env() });
    expect(inPlace.code, describeRun(inPlace)).toBe(2);
    expect(inPlace.stderr).toMatch(/cannot be reached from here \(a remote Docker daemon\)/);
    expect(inPlace.stderr).toMatch(/--target DIR/);
  }, 180_000);
});
