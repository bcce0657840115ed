/**
 * Issue 24: Docker named volumes as sources against a real dockerd (test/helpers/docker.ts): volumes read
 * from their mountpoints, a stop-labelled container down only for the catch-up pass and always started
 * again, a labelled container of another compose project left alone, a container that will not stop
 * copied live, a container stopped before the backup left stopped, unknown volume, missing daemon and no
 * permission on its socket refused with exit 2.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { binaryUnreachableBy, describeRun, run } from '../helpers/cli.js';
import { type Dockerd, dockerNeed, startDockerd } from '../helpers/docker.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { makeToken, serve, waitJob } from '../helpers/serve.js';

const need = dockerNeed();
const NOBODY = 65534;
// a writer that stops on SIGTERM (sleep in the background so the trap runs at once)
const WRITER = `trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo $i > /data/counter; sleep 0.05 & wait $!; done`;

need.describe('Docker volumes (real dockerd)', () => {
  let d: Dockerd;
  let cwd: string;
  let backupDir: string;
  const env = () => ({ DOCKER_HOST: d.host, VOLUMES: 'pgdata,functions', DOCKER_STOP_TIMEOUT: '2s' });

  beforeAll(async () => {
    d = await startDockerd();
    cwd = tempDir('vb-dv-');
    backupDir = path.join(cwd, 'backups');
    d.docker(['volume', 'create', '--label', 'com.docker.compose.project=app', 'pgdata']);
    d.docker(['volume', 'create', '--label', 'com.docker.compose.project=app', 'functions']);
    const pg = d.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'pgdata']);
    for (let i = 0; i < 50; i++) fs.writeFileSync(path.join(pg, `f${i}.dat`), `data ${i}\n`.repeat(100));
    fs.mkdirSync(path.join(pg, 'base'));
    fs.writeFileSync(path.join(pg, 'base', 'owned'), 'x');
    fs.chownSync(path.join(pg, 'base', 'owned'), 999, 999);
    const fn = d.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'functions']);
    fs.writeFileSync(path.join(fn, 'main.dart'), 'void main() {}\n');
    const label = ['--label', 'vertex-backup.stop=true'];
    d.docker(['run', '-d', '--name', 'db', '--network', 'none', ...label, '--label', 'com.docker.compose.project=app', '-v', 'pgdata:/data', 'tiny:latest', '/bin/sh', '-c', WRITER]);
    // another project's container, labelled too: must never be stopped by this backup
    d.docker(['run', '-d', '--name', 'other', '--network', 'none', ...label, '--label', 'com.docker.compose.project=other', '-v', 'pgdata:/data:ro', 'tiny:latest', '/bin/sh', '-c', 'trap "exit 0" TERM; while true; do sleep 0.1 & wait $!; done']);
    // PID 1 without a TERM handler ignores SIGTERM: a container that will not stop
    d.docker(['run', '-d', '--name', 'stubborn', '--network', 'none', ...label, '--label', 'com.docker.compose.project=app', '-v', 'functions:/data', 'tiny:latest', '/bin/sleep', '100000']);
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
    rmrf(cwd);
  }, 60_000);

  const startedAt = (name: string) => d.docker(['inspect', '-f', '{{.State.StartedAt}}', name]);
  const running = (name: string) => d.docker(['inspect', '-f', '{{.State.Running}}', name]) === 'true';

  need.it('create --type volumes: live pass, the labelled container stopped for the catch-up only and started again', async () => {
    const otherStarted = startedAt('other');
    const stubbornStarted = startedAt('stubborn');
    const metricsFile = path.join(cwd, 'vertex-backup.prom');
    const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir, '--json', '--metrics-file', metricsFile], { cwd, env: env(), timeoutMs: 90_000 });
    expect(r.code, describeRun(r)).toBe(0);
    // the downtime reaches the metrics file, per volume and container
    const metrics = fs.readFileSync(metricsFile, 'utf8');
    const down = /^vertex_backup_volume_container_downtime_seconds\{volume="pgdata",container="db"\} (\S+)$/m.exec(metrics);
    expect(Number(down?.[1]), metrics).toBeGreaterThan(0);
    expect(metrics).toMatch(/^vertex_backup_volume_last_success_timestamp_seconds\{volume="functions"\} \d/m);
    const out = JSON.parse(r.stdout) as { volumes: { volume: string; id: string; passes: { id: string }[]; containers: { name: string; stopped: boolean; downtime_ms: number; restarted: boolean }[] }[] };
    const pg = out.volumes.find((v) => v.volume === 'pgdata')!;
    expect(pg.passes.length).toBe(2);
    expect(pg.containers).toEqual([expect.objectContaining({ name: 'db', stopped: true, restarted: true })]);
    expect(pg.containers[0].downtime_ms).toBeGreaterThan(0);
    expect(running('db')).toBe(true);
    // the other project's container: warned about, never touched
    expect(r.stderr).toMatch(/container other is labelled vertex-backup.stop=true but belongs to compose project 'other'/);
    expect(startedAt('other')).toBe(otherStarted);
    // the one that would not stop: copied live, said so, not restarted by us (it never went down)
    expect(r.stderr).toMatch(/container stubborn did not stop within 2 s: volume functions is copied while it runs/);
    expect(startedAt('stubborn')).toBe(stubbornStarted);
    // the catch-up backup: its sidecar names the downtime; plain tar reads the chain
    const sc = JSON.parse(fs.readFileSync(path.join(backupDir, 'volumes', 'pgdata', 'storage', `storage_backup_${pg.id}.json`), 'utf8'));
    expect(sc.volume.containers[0]).toMatchObject({ name: 'db', stopped: true, restarted: true });
    expect(sc.level).toBe(1);
    const list = spawnSync('tar', ['-tzf', path.join(backupDir, 'volumes', 'pgdata', 'storage', `storage_backup_${pg.passes[0].id}.tar.gz`)], { encoding: 'utf8' });
    expect(list.stdout).toContain('f49.dat');
    const v = await run(['verify', '--all', '--backup-dir', path.join(backupDir, 'volumes', 'pgdata')], { cwd });
    expect(v.code, describeRun(v)).toBe(0);
  }, 120_000);

  need.it('restore ID --volume NAME: the labelled container stopped and started again, contents with owners back; --target restores beside', async () => {
    const pg = d.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'pgdata']);
    fs.rmSync(path.join(pg, 'f7.dat'));
    fs.writeFileSync(path.join(pg, 'f8.dat'), 'damaged');
    const dbStarted = startedAt('db');
    const otherStarted = startedAt('other');
    const r = await run(['restore', 'latest', '--volume', 'pgdata', '--yes', '--backup-dir', backupDir, '--json'], { cwd, env: env(), timeoutMs: 60_000 });
    expect(r.code, describeRun(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { containers: { name: string; stopped: boolean; restarted: boolean }[] };
    expect(out.containers).toEqual([expect.objectContaining({ name: 'db', stopped: true, restarted: true })]);
    expect(running('db')).toBe(true);
    expect(startedAt('db')).not.toBe(dbStarted);
    expect(startedAt('other')).toBe(otherStarted);
    const now = d.docker(['volume', 'inspect', '-f', '{{.Mountpoint}}', 'pgdata']);
    expect(fs.readFileSync(path.join(now, 'f7.dat'), 'utf8')).toBe('data 7\n'.repeat(100));
    expect(fs.readFileSync(path.join(now, 'f8.dat'), 'utf8')).toBe('data 8\n'.repeat(100));
    expect(fs.statSync(path.join(now, 'base', 'owned')).uid).toBe(999);
    // the container writes into the restored volume again
    const before = fs.readFileSync(path.join(now, 'counter'), 'utf8');
    await new Promise((res) => setTimeout(res, 500));
    expect(fs.readFileSync(path.join(now, 'counter'), 'utf8')).not.toBe(before);

    const target = path.join(cwd, 'beside');
    const b = await run(['restore', 'latest', '--volume', 'functions', '--target', target, '--yes', '--backup-dir', backupDir], { cwd, env: { DOCKER_HOST: `unix://${cwd}/none.sock` } });
    expect(b.code, describeRun(b)).toBe(0);
    expect(fs.readFileSync(path.join(target, 'functions', 'main.dart'), 'utf8')).toBe('void main() {}\n');
  }, 120_000);

  need.it('a container that fails to start again: exit 1, a loud line naming it, the backup kept', async () => {
    d.docker(['volume', 'create', '--label', 'com.docker.compose.project=app', 'cache']);
    const gone = path.join(d.dir, 'gone');
    fs.mkdirSync(gone);
    d.docker(['run', '-d', '--name', 'fragile', '--network', 'none', '--label', 'vertex-backup.stop=true', '--label', 'com.docker.compose.project=app', '-v', 'cache:/data', '--mount', `type=bind,src=${gone},dst=/gone`, 'tiny:latest', '/bin/sh', '-c', WRITER]);
    // --mount (unlike -v) refuses a bind source that no longer exists: the start after the backup fails
    fs.rmSync(gone, { recursive: true });
    const r = await run(['create', '--type', 'volumes', '--volumes', 'cache', '--backup-dir', backupDir], { cwd, env: env(), timeoutMs: 60_000 });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stderr).toMatch(/container fragile .* did not start again after the backup of volume cache/);
    expect(fs.readdirSync(path.join(backupDir, 'volumes', 'cache', 'storage')).filter((f) => f.endsWith('.json')).length).toBe(2);
  }, 60_000);

  need.it('SIGTERM while the containers are stopped: they are started again before the process ends', async () => {
    const { start } = await import('../helpers/cli.js');
    const { child, done } = start(['create', '--type', 'volumes', '--volumes', 'pgdata', '--backup-dir', backupDir], {
      cwd,
      env: { ...env(), VERTEX_BACKUP_FAULT_POINT: 'volume-stopped' },
      timeoutMs: 60_000,
    });
    const state = () => fs.readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.[0];
    for (let i = 0; i < 300 && state() !== 'T'; i++) await new Promise((res) => setTimeout(res, 50));
    expect(state()).toBe('T');
    expect(running('db')).toBe(false);
    child.kill('SIGTERM');
    child.kill('SIGCONT');
    const r = await done;
    expect(r.code, describeRun(r)).toBe(143);
    expect(running('db')).toBe(true);
  }, 90_000);

  need.it('a volume that does not exist: exit 2, a clear line, nothing stopped', async () => {
    const dbStarted = startedAt('db');
    const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir], { cwd, env: { ...env(), VOLUMES: 'pgdata,nosuch' } });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/no Docker volume named 'nosuch'/);
    expect(startedAt('db')).toBe(dbStarted);
  });

  need.it('a labelled container that was stopped before the backup stays stopped after it', async () => {
    d.docker(['create', '--name', 'parked', '--network', 'none', '--label', 'vertex-backup.stop=true', '--label', 'com.docker.compose.project=app', '-v', 'pgdata:/data', 'tiny:latest', '/bin/sleep', '100000']);
    try {
      const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir, '--json'], { cwd, env: { ...env(), VOLUMES: 'pgdata' }, timeoutMs: 90_000 });
      expect(r.code, describeRun(r)).toBe(0);
      expect(running('parked')).toBe(false);
      expect(d.docker(['inspect', '-f', '{{.State.StartedAt}}', 'parked'])).toMatch(/^0001-01-01/);
      const out = JSON.parse(r.stdout) as { volumes: { containers: { name: string }[] }[] };
      expect(out.volumes[0].containers.map((c) => c.name)).not.toContain('parked');
      expect(running('db')).toBe(true);
    } finally {
      d.docker(['rm', '-f', 'parked']);
    }
  }, 90_000);

  need.it('no permission on the Docker socket: exit 2, one line saying so, nothing stopped', async (ctx) => {
    // as the unprivileged user nobody: root connects to any socket whatever its mode
    const unreachable = binaryUnreachableBy(NOBODY);
    if (unreachable) return ctx.skip(unreachable);
    const sock = d.host.replace(/^unix:\/\//, '');
    fs.chmodSync(sock, 0o660);
    const own = tempDir('vb-dv-nobody-');
    fs.chownSync(own, NOBODY, NOBODY);
    const dbStarted = startedAt('db');
    try {
      const r = await run(['create', '--type', 'volumes', '--backup-dir', path.join(own, 'b')], { cwd: own, env: env(), uid: NOBODY });
      expect(r.code, describeRun(r)).toBe(2);
      expect(r.stderr).toMatch(/no permission on the Docker socket/);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expect(startedAt('db')).toBe(dbStarted);
    } finally {
      rmrf(own);
    }
  });

  need.it('no daemon at DOCKER_HOST: exit 2', async () => {
    const r = await run(['create', '--type', 'volumes', '--backup-dir', backupDir], { cwd, env: { ...env(), DOCKER_HOST: `unix://${cwd}/none.sock` } });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/no Docker daemon at .*none\.sock/);
  });

  need.it('POST /backups/create through serve backs up the volumes like create (issue 26): the container down for the catch-up, started again', async () => {
    const config = path.join(cwd, 'serve-config.json');
    const token = await makeToken(cwd, config, 'trigger');
    const server = await serve(cwd, ['--config', config, '--backup-dir', backupDir], [], { ...env(), VOLUMES: 'pgdata' });
    try {
      const h = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const r = await fetch(`${server.url}/backups/create`, { method: 'POST', headers: h, body: '{"type":"volumes"}' });
      expect(r.status, await r.clone().text()).toBe(202);
      const job = await waitJob(server.url, ((await r.json()) as { job_id: string }).job_id, h);
      expect(job.state, JSON.stringify(job)).toBe('succeeded');
      const out = job.result as { type: string; volumes: { volume: string; id: string; containers: { name: string; stopped: boolean; restarted: boolean }[] }[] };
      expect(out.type).toBe('volumes');
      const pg = out.volumes.find((v) => v.volume === 'pgdata')!;
      expect(pg.containers).toEqual([expect.objectContaining({ name: 'db', stopped: true, restarted: true })]);
      expect(fs.existsSync(path.join(backupDir, 'volumes', 'pgdata', 'storage', `storage_backup_${pg.id}.json`))).toBe(true);
      expect(running('db')).toBe(true);
    } finally {
      await server.stop();
    }
  }, 90_000);
});
