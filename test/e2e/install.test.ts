/**
 * Issue 29 item 3, and the done-criterion: from a fresh copy of the repository to a scheduled,
 * offsite, encrypted, monitored set-up with scripts/install.sh and `vertex-backup init` alone, in a
 * scratch root. `systemd-analyze verify --root` judges the installed units (the binary ExecStart=
 * names must exist and be executable there), and the nightly run is the command the unit runs, with the
 * environment the unit reads.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, REPO, run } from '../helpers/cli.js';
import { makeDatabase, makeStorage, rmrf, tempDir } from '../helpers/fixtures.js';
import { type Recorder, startRecorder } from '../helpers/http-recorder.js';
import { needs } from '../helpers/optional.js';

const analyze = needs('systemd-analyze', 'systemd');
let work: string;
let recorder: Recorder;
beforeAll(async () => {
  work = tempDir('vb-install-');
  recorder = await startRecorder();
});
afterAll(async () => {
  await recorder?.close();
  rmrf(work);
});

/** The repository as a clone has it: tracked and new (not ignored) files, built there. */
function freshCopy(dest: string): void {
  const files = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO, encoding: 'utf8' });
  expect(files.status, files.stderr).toBe(0);
  for (const rel of files.stdout.split('\0').filter(Boolean)) {
    const from = path.join(REPO, rel);
    if (!fs.existsSync(from) || rel === 'node_modules') continue;
    fs.mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
    fs.cpSync(from, path.join(dest, rel), { verbatimSymlinks: true });
  }
  // `npm ci` stands here: the checkout's dependencies (the same lock file)
  fs.symlinkSync(fs.realpathSync(path.join(REPO, 'node_modules')), path.join(dest, 'node_modules'));
  const build = spawnSync(process.execPath, [path.join(dest, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: dest, encoding: 'utf8' });
  expect(build.status, `${build.stdout}${build.stderr}`).toBe(0);
}

function sh(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { PATH: process.env.PATH, HOME: work, LANG: 'C.UTF-8', TZ: 'UTC' } });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('install.sh into a scratch root, then init', () => {
  analyze.it(
    'a scheduled, offsite, encrypted, monitored set-up; systemd-analyze verify accepts the units',
    async () => {
      const clone = path.join(work, 'clone');
      freshCopy(clone);
      const root = path.join(work, 'root');

      const install = sh('bash', [path.join(clone, 'scripts', 'install.sh'), '--root', root, '--link-modules'], clone);
      expect(install.code, install.out).toBe(0);
      const bin = path.join(root, 'usr/local/bin/vertex-backup');
      expect(fs.readlinkSync(bin)).toBe('/opt/vertex-backup/bin/vertex-backup.js');
      const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/vertex-backup.service'), 'utf8');
      expect(unit).toMatch(/^ExecStart=\/usr\/local\/bin\/vertex-backup create --type full --rotate$/m);
      expect(install.out).toContain('/var/lib/vertex-backup/remote_storage.json');
      expect(install.out).toMatch(/ReadWritePaths=\/mnt\/nas/);
      expect(fs.existsSync(path.join(root, 'var/backups/vertex-backup'))).toBe(true);
      expect(fs.existsSync(path.join(root, 'usr/local/share/man/man1/vertex-backup.1'))).toBe(true);
      const installed = path.join(root, 'opt/vertex-backup/bin/vertex-backup.js');

      // the application: a SQLite database and media, a NAS share, an age key kept off the server
      const app = path.join(root, 'srv/app');
      fs.mkdirSync(app, { recursive: true });
      makeDatabase(path.join(app, 'app.db'), { events: 20 });
      makeStorage(path.join(app, 'media'), { randomBytes: 8192 });
      fs.mkdirSync(path.join(root, 'mnt/nas'), { recursive: true });
      const key = await run([...['keygen', '-o', path.join(work, 'key.txt')], '--json'], { cwd: work });
      expect(key.code, describeRun(key)).toBe(0);
      const recipient = JSON.parse(key.stdout).recipient as string;

      const init = sh(
        process.execPath,
        [
          installed,
          'init',
          ...['--db-path', path.join(app, 'app.db'), '--storage-path', path.join(app, 'media')],
          ...['--backup-dir', path.join(root, 'var/backups/vertex-backup')],
          ...['--env-out', path.join(root, 'etc/vertex-backup/env')],
          ...['--remotes-out', path.join(root, 'var/lib/vertex-backup/remote_storage.json')],
          ...['--remote', `nas=file://${root}/mnt/nas/vertex-backup`],
          ...['--recipient', recipient],
          ...['--healthcheck-url', `${recorder.url}/ping/abc`],
          ...['--metrics-file', path.join(root, 'var/lib/node_exporter/vertex-backup.prom')],
          ...['--systemd-dir', path.join(root, 'etc/systemd/system')],
          ...['--bin', '/usr/local/bin/vertex-backup'],
        ],
        work,
      );
      expect(init.code, init.out).toBe(0);
      fs.mkdirSync(path.join(root, 'var/lib/node_exporter'), { recursive: true });

      // systemd's own units, so that --root finds sysinit.target and friends
      fs.cpSync('/lib/systemd/system', path.join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
      const units = ['vertex-backup.service', 'vertex-backup.timer', 'vertex-backup-sync.service', 'vertex-backup-sync.timer', 'vertex-backup-drill.service'];
      const verify = sh('systemd-analyze', ['verify', `--root=${root}`, ...units.map((u) => path.join(root, 'etc/systemd/system', u))], root);
      expect(verify.code, verify.out).toBe(0);
      expect(verify.out).not.toMatch(/not executable|No such file/);
      // scheduled: the timer fires nightly
      expect(fs.readFileSync(path.join(root, 'etc/systemd/system/vertex-backup.timer'), 'utf8')).toMatch(/^OnCalendar=/m);

      // the night: what the unit runs (ExecStart= of the drop-in), with what the unit reads (the env file)
      const dropIn = fs.readFileSync(path.join(root, 'etc/systemd/system/vertex-backup.service.d/vertex-backup-init.conf'), 'utf8');
      const exec = dropIn.match(/^ExecStart=\/usr\/local\/bin\/vertex-backup (.+)$/m)?.[1];
      expect(exec).toBe('create --type full --rotate --sync');
      const envFile = ['--env-file', path.join(root, 'etc/vertex-backup/env')];
      const night = sh(process.execPath, [installed, ...envFile, ...exec!.split(' ')], path.join(root, 'var/lib/vertex-backup'));
      expect(night.code, night.out).toBe(0);

      // encrypted
      const storage = fs.readdirSync(path.join(root, 'var/backups/vertex-backup/storage'));
      expect(storage.some((f) => f.endsWith('.age'))).toBe(true);
      // offsite, and the copy is good
      const remote = sh(process.execPath, [installed, ...envFile, 'verify', '--remote', 'nas', '--all'], work);
      expect(remote.code, remote.out).toBe(0);
      // monitored: a healthcheck ping per run, the metrics file, and check says all is well
      const pings = await recorder.waitFor(2, 10_000);
      expect(pings.some((p) => p.url.startsWith('/ping/abc'))).toBe(true);
      expect(fs.readFileSync(path.join(root, 'var/lib/node_exporter/vertex-backup.prom'), 'utf8')).toMatch(/vertex_backup_/);
      const check = sh(process.execPath, [installed, ...envFile, 'check'], work);
      expect(check.code, check.out).toBe(0);
    },
    300_000,
  );
});
