/**
 * Issue 29 items 1 and 2: `vertex-backup init` sets an installation up in one step, and destinations
 * that init marked must exist. An unmounted disk (an empty mount point, or no directory at all) is an
 * error naming the likely cause, never a new directory with backups in it; the same for a file://
 * remote, which `remote test` no longer creates nor calls connected when nothing answered.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

function newApp(): AppFixture {
  const app = makeApp({ randomBytes: 4096, events: 5 });
  apps.push(app.cwd);
  return app;
}

const mode = (p: string) => fs.statSync(p).mode & 0o777;
const envFlags = (app: AppFixture) => ['--env-file', path.join(app.cwd, 'etc', 'env')];

async function init(app: AppFixture, extra: string[] = []) {
  const nas = path.join(app.cwd, 'nas');
  fs.mkdirSync(nas, { recursive: true });
  const r = await run(
    [
      'init',
      ...app.flags,
      '--env-out',
      path.join(app.cwd, 'etc', 'env'),
      '--remote',
      `nas=file://${nas}/vertex`,
      '--systemd-dir',
      path.join(app.cwd, 'systemd'),
      ...extra,
    ],
    { cwd: app.cwd },
  );
  return { r, nas: path.join(nas, 'vertex') };
}

describe('init', () => {
  it('writes a 0600 env file and remotes file, marks the backup directory and the remote, writes the drop-ins', async () => {
    const app = newApp();
    const { r, nas } = await init(app);
    expect(r.code, describeRun(r)).toBe(0);
    const env = fs.readFileSync(path.join(app.cwd, 'etc', 'env'), 'utf8');
    expect(mode(path.join(app.cwd, 'etc', 'env'))).toBe(0o600);
    expect(mode(path.join(app.cwd, 'etc', 'remote_storage.json'))).toBe(0o600);
    const marker = JSON.parse(fs.readFileSync(path.join(app.backupDir, '.vertex-backup-dir'), 'utf8'));
    expect(marker).toMatchObject({ format: 1, kind: 'backup-dir' });
    expect(env).toContain(`BACKUP_DIR=${app.backupDir}\n`);
    expect(env).toContain(`BACKUP_DIR_ID=${marker.id}\n`);
    expect(env).toContain(`DATABASE_PATH=${app.dbPath}\n`);
    expect(env).toMatch(/^# /m); // commented
    const remotes = JSON.parse(fs.readFileSync(path.join(app.cwd, 'etc', 'remote_storage.json'), 'utf8'));
    const remoteMarker = JSON.parse(fs.readFileSync(path.join(nas, '.vertex-backup-remote'), 'utf8'));
    expect(remotes.remotes.nas).toEqual({ url: `file://${nas}`, marker_id: remoteMarker.id });
    // the probe left nothing behind but the marker
    expect(fs.readdirSync(nas)).toEqual(['.vertex-backup-remote']);
    const dropIn = fs.readFileSync(path.join(app.cwd, 'systemd', 'vertex-backup.service.d', 'vertex-backup-init.conf'), 'utf8');
    expect(dropIn).toMatch(/^ExecStart=$/m);
    expect(dropIn).toContain(`ExecStart=${path.resolve('bin/vertex-backup.js')} create --type full --rotate --sync`);
    expect(dropIn).toContain(`ReadWritePaths=${app.backupDir} ${path.dirname(app.dbPath)} ${app.storagePath} ${nas}`);

    // the env file is all a run needs: backup, offsite copy, list
    const c = await run(['create', '--sync', '--json', ...envFlags(app)], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const l = parseJsonStdout<unknown[]>(await run(['list', '--remote', 'nas', '--json', ...envFlags(app)], { cwd: app.cwd }));
    expect(l.length).toBeGreaterThan(0);
  });

  it('prints the systemctl edit override and next steps when no --systemd-dir is given', async () => {
    const app = newApp();
    const r = await run(['init', ...app.flags, '--env-out', path.join(app.cwd, 'etc', 'env')], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stdout).toContain('# systemctl edit vertex-backup.service');
    expect(r.stdout).toContain(`ExecStart=${path.resolve('bin/vertex-backup.js')} create --type full --rotate\n`);
    expect(r.stdout).toMatch(/Next steps:/);
  });

  it('never overwrites an env file; without paths and no terminal it names the flag (exit 2)', async () => {
    const app = newApp();
    fs.mkdirSync(path.join(app.cwd, 'etc'));
    fs.writeFileSync(path.join(app.cwd, 'etc', 'env'), 'KEEP=1\n');
    const r = await run(['init', ...app.flags, '--env-out', path.join(app.cwd, 'etc', 'env')], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/env file .* exists; init does not overwrite it/);
    expect(fs.readFileSync(path.join(app.cwd, 'etc', 'env'), 'utf8')).toBe('KEEP=1\n');
    expect(fs.existsSync(app.backupDir)).toBe(false);

    const bare = await run(['init', '--env-out', path.join(app.cwd, 'other.env')], { cwd: app.cwd });
    expect(bare.code, describeRun(bare)).toBe(2);
    expect(bare.stderr).toMatch(/init needs the SQLite database file .*: --db-path/);
  });
});

describe('a marked backup directory must exist', () => {
  it('an empty mount point or a missing directory: exit 2 naming the disk, nothing written, nothing created', async () => {
    const app = newApp();
    expect((await init(app)).r.code).toBe(0);
    const first = await run(['create', ...envFlags(app)], { cwd: app.cwd });
    expect(first.code, describeRun(first)).toBe(0);

    // the disk did not mount: its mount point is an empty directory
    fs.renameSync(app.backupDir, `${app.backupDir}.disk`);
    fs.mkdirSync(app.backupDir);
    const r = await run(['create', ...envFlags(app)], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/backup directory .* has no \.vertex-backup-dir .*is its disk mounted\?/);
    expect(fs.readdirSync(app.backupDir)).toEqual([]);

    // no directory at all: not created
    fs.rmdirSync(app.backupDir);
    for (const cmd of [['create'], ['list'], ['rotate']]) {
      const m = await run([...cmd, ...envFlags(app)], { cwd: app.cwd });
      expect(m.code, describeRun(m)).toBe(2);
      expect(m.stderr).toMatch(/backup directory .* does not exist .*is its disk mounted/);
      expect(fs.existsSync(app.backupDir)).toBe(false);
    }

    // the disk is back: all as before
    fs.renameSync(`${app.backupDir}.disk`, app.backupDir);
    const back = await run(['create', ...envFlags(app)], { cwd: app.cwd });
    expect(back.code, describeRun(back)).toBe(0);
  });

  it('an existing set-up without a marker keeps working with a warning; init --adopt marks it', async () => {
    const app = newApp();
    const r = await run(['create', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    const again = await run(['create', ...app.flags], { cwd: app.cwd });
    expect(again.code, describeRun(again)).toBe(0);
    expect(again.stderr).toMatch(/backup directory .* is not marked: run 'vertex-backup init --adopt'/);

    const adopt = await run(['init', '--adopt', '--json', ...app.flags], { cwd: app.cwd });
    expect(adopt.code, describeRun(adopt)).toBe(0);
    const id = parseJsonStdout<{ backup_dir: { id: string } }>(adopt).backup_dir.id;
    expect(JSON.parse(fs.readFileSync(path.join(app.backupDir, '.vertex-backup-dir'), 'utf8')).id).toBe(id);
    const after = await run(['create', ...app.flags], { cwd: app.cwd, env: { BACKUP_DIR_ID: id } });
    expect(after.code, describeRun(after)).toBe(0);
    expect(after.stderr).not.toMatch(/not marked/);
    // another id: another disk
    const other = await run(['list', ...app.flags], { cwd: app.cwd, env: { BACKUP_DIR_ID: 'another-id' } });
    expect(other.code, describeRun(other)).toBe(2);
    expect(other.stderr).toMatch(/is marked .* but BACKUP_DIR_ID is another-id/);
  });
});

describe('a remote that is not there', () => {
  it('remote test of a file:// path whose disk is not mounted: FAIL connect, nothing created', async () => {
    const app = newApp();
    const url = `file://${app.cwd}/usb-not-mounted/vertex`;
    const r = await run(['remote', 'test', url], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stdout).toMatch(/FAIL connect .*does not exist, nor does .*usb-not-mounted: is the disk or share mounted\?/);
    expect(r.stdout).not.toMatch(/ok +connect/);
    expect(r.stdout).not.toMatch(/works/);
    expect(fs.existsSync(path.join(app.cwd, 'usb-not-mounted'))).toBe(false);
    // sync does not create it either
    await run(['create', ...app.flags], { cwd: app.cwd });
    const s = await run(['sync', '--remote', url, ...app.flags], { cwd: app.cwd });
    expect(s.code, describeRun(s)).toBe(1);
    expect(fs.existsSync(path.join(app.cwd, 'usb-not-mounted'))).toBe(false);
  });

  it('a marked remote without its marker (the NAS share did not mount): sync and remote test refuse it', async () => {
    const app = newApp();
    const { r, nas } = await init(app);
    expect(r.code, describeRun(r)).toBe(0);
    fs.renameSync(nas, `${nas}.share`);
    fs.mkdirSync(nas);
    const c = await run(['create', ...envFlags(app)], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    const s = await run(['sync', ...envFlags(app)], { cwd: app.cwd });
    expect(s.code, describeRun(s)).toBe(1);
    expect(s.stderr).toMatch(/remote nas .* has no \.vertex-backup-remote .*is the disk or share mounted/);
    expect(fs.readdirSync(nas)).toEqual([]);
    const t = await run(['remote', 'test', 'nas', ...envFlags(app)], { cwd: app.cwd });
    expect(t.code, describeRun(t)).toBe(1);
    expect(t.stdout).toMatch(/FAIL connect/);
    expect(fs.readdirSync(nas)).toEqual([]);
  });
});
