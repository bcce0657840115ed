import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cron } from 'croner';
import { needs } from '../helpers/optional.js';
import { SYSTEMD_DB_TIMER } from '../../src/schedule/table.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const UNITS = [
  'vertex-backup.service',
  'vertex-backup.timer',
  'vertex-backup-notify@.service',
  'vertex-backup-drill.service',
  'vertex-backup-drill.timer',
  'vertex-backup-sync.service',
  'vertex-backup-sync.timer',
  'vertex-backup-serve.service',
  'vertex-backup-db.service',
  'vertex-backup-db.timer',
];
const analyze = needs('systemd-analyze', 'systemd');

/** `[Section]` → key → values (keys may repeat). */
function parseUnit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      section = m[1];
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    const key = line.slice(0, eq).trim();
    (out[section][key] ??= []).push(line.slice(eq + 1).trim());
  }
  return out;
}

const read = (name: string) => fs.readFileSync(path.join(REPO, 'systemd', name), 'utf8');

let dir: string;
let paths: { backup: string; db: string; storage: string; bin: string };

/** The shipped units with every host path pointed at something that exists here. */
function substituted(text: string): string {
  return text
    .replaceAll('/usr/local/bin/vertex-backup', paths.bin)
    .replaceAll('/var/backups/vertex-backup', paths.backup)
    .replaceAll('/srv/vertex-app/app_data', paths.db)
    .replaceAll('/srv/vertex-app/storage', paths.storage);
}

function verify(files: string[]) {
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...files], { cwd: dir, encoding: 'utf8' });
  // systemd-analyze verify exits 0 on many parse warnings: what it says about *our* files is the verdict
  const ours = (r.stderr + r.stdout)
    .split('\n')
    .filter((l) => l.trim() && /vertex-backup/.test(l));
  return { status: r.status, ours, all: r.stderr + r.stdout };
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-systemd-'));
  paths = {
    backup: path.join(dir, 'backups'),
    db: path.join(dir, 'app_data'),
    storage: path.join(dir, 'storage'),
    bin: path.join(dir, 'vertex-backup'),
  };
  for (const d of [paths.backup, paths.db, paths.storage]) fs.mkdirSync(d);
  // an executable stand-in: verify checks that ExecStart= names an executable file
  fs.writeFileSync(paths.bin, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  for (const u of UNITS) fs.writeFileSync(path.join(dir, u), substituted(read(u)));
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

analyze.describe('systemd-analyze verify', () => {
  it('accepts the units with the paths substituted', () => {
    const r = verify(UNITS.map((u) => path.join(dir, u)));
    expect(r.ours, r.all).toEqual([]);
    expect(r.status, r.all).toBe(0);
  });

  it('catches a broken unit (the check itself works)', () => {
    const broken = path.join(dir, 'broken', 'vertex-backup.service');
    fs.mkdirSync(path.dirname(broken), { recursive: true });
    fs.writeFileSync(broken, substituted(read('vertex-backup.service')).replace('Type=oneshot', 'Type=oneshoot').replace(paths.bin, '/nonexistent/vertex-backup'));
    const r = verify([broken]);
    expect(r.ours.join('\n')).toMatch(/oneshoot/);
    expect(r.ours.join('\n')).toMatch(/not executable|No such file/);
  });
});

describe('unit contents', () => {
  const service = parseUnit(read('vertex-backup.service'));
  const timer = parseUnit(read('vertex-backup.timer'));
  const notify = parseUnit(read('vertex-backup-notify@.service'));
  const svc = service.Service;

  it('runs a oneshot full backup with rotation as a dedicated user', () => {
    expect(svc.Type).toEqual(['oneshot']);
    expect(svc.User).toEqual(['vertex-backup']);
    expect(svc.Group).toEqual(['vertex-backup']);
    expect(svc.WorkingDirectory?.[0]).toMatch(/^\//);
    expect(svc.EnvironmentFile).toEqual(['-/etc/vertex-backup/env']);
    expect(svc.ExecStart).toEqual(['/usr/local/bin/vertex-backup create --type full --rotate']);
    expect(svc.SyslogIdentifier).toEqual(['vertex-backup']);
    expect(svc.StandardOutput).toEqual(['journal']);
  });

  it('yields to the application and is hardened', () => {
    expect(Number(svc.Nice?.[0])).toBeGreaterThan(0);
    expect(svc.IOSchedulingClass?.[0]).toMatch(/best-effort|idle/);
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['PrivateTmp', 'yes'],
      ['ProtectHome', 'yes'],
      ['UMask', '0077'],
    ]) {
      expect(svc[k], k).toEqual([v]);
    }
    // every path the service writes is listed, and it matches the environment it runs with
    const rw = svc.ReadWritePaths.join(' ').split(/\s+/);
    const env = Object.fromEntries(svc.Environment.map((e) => e.split('=')));
    expect(rw).toContain(env.BACKUP_DIR);
    expect(rw).toContain(path.dirname(env.DATABASE_PATH));
    expect(rw).toContain(env.STORAGE_PATH);
  });

  it('page deltas: every 30 s to the second (OnUnitActiveSec=30s, AccuracySec=1s), exit 4 (busy) is no failure', () => {
    const t = parseUnit(read('vertex-backup-db.timer')).Timer;
    expect(t.OnUnitActiveSec).toEqual([SYSTEMD_DB_TIMER.onUnitActiveSec]);
    expect(t.AccuracySec).toEqual([SYSTEMD_DB_TIMER.accuracySec]);
    expect(t.Unit).toEqual(['vertex-backup-db.service']);
    const db = parseUnit(read('vertex-backup-db.service')).Service;
    expect(db.ExecStart).toEqual([`/usr/local/bin/vertex-backup ${SYSTEMD_DB_TIMER.args.join(' ')}`]);
    expect(db.SuccessExitStatus).toEqual(['4']);
    expect(db.User).toEqual(['vertex-backup']);
    const env = Object.fromEntries(db.Environment.map((e) => e.split('=')));
    expect(db.ReadWritePaths.join(' ').split(/\s+/).sort()).toEqual([env.BACKUP_DIR, path.dirname(env.DATABASE_PATH)].sort());
  });

  it('serve: a long-running service on loopback, hardened like the backup unit', () => {
    const serve = parseUnit(read('vertex-backup-serve.service')).Service;
    expect(serve.Type).toEqual(['simple']);
    expect(serve.User).toEqual(['vertex-backup']);
    expect(serve.ExecStart?.[0]).toMatch(/ serve --host 127\.0\.0\.1 /);
    for (const k of ['NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'ProtectHome', 'UMask', 'ReadWritePaths', 'CapabilityBoundingSet', 'SystemCallFilter', 'RestrictAddressFamilies'])
      expect(serve[k], k).toEqual(svc[k]);
  });

  it('reports failures through an existing notify unit', () => {
    expect(service.Unit.OnFailure).toEqual(['vertex-backup-notify@%n.service']);
    expect(fs.existsSync(path.join(REPO, 'systemd', 'vertex-backup-notify@.service'))).toBe(true);
    expect(notify.Service.ExecStart?.[0]).toBe('/usr/local/bin/vertex-backup notify --failed-unit %i');
    expect(notify.Service.EnvironmentFile).toEqual(['-/etc/vertex-backup/env']);
    expect(notify.Service.User).toEqual(['vertex-backup']);
  });

  it('times the backup daily at 02:00, persistent, with a small random delay', () => {
    expect(timer.Timer.OnCalendar).toEqual(['*-*-* 02:00:00']);
    expect(timer.Timer.Persistent).toEqual(['true']);
    expect(timer.Timer.Unit).toEqual(['vertex-backup.service']);
    const delay = timer.Timer.RandomizedDelaySec?.[0] ?? '';
    const minutes = Number(/^(\d+)min$/.exec(delay)?.[1] ?? Number.NaN);
    expect(minutes).toBeGreaterThan(0);
    expect(minutes).toBeLessThanOrEqual(30);
    expect(timer.Install.WantedBy).toEqual(['timers.target']);
  });

  analyze.it('fires at 02:00 as systemd computes it', () => {
    const r = spawnSync('systemd-analyze', ['calendar', '--iterations=2', timer.Timer.OnCalendar[0]], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(r.status, r.stderr).toBe(0);
    const next = /Next elapse: .* (\d\d:\d\d:\d\d)/.exec(r.stdout)?.[1];
    expect(next).toBe('02:00:00');
    // the same instant croner (the cron file, the scheduler) computes for the seed's "0 2 * * *"
    const c = new Cron('0 2 * * *', { paused: true, timezone: 'UTC' });
    expect(c.nextRun()?.toISOString().slice(11, 19)).toBe('02:00:00');
  });
});

describe('continuous replication units', () => {
  const sync = parseUnit(read('vertex-backup-sync.service'));
  const timer = parseUnit(read('vertex-backup-sync.timer'));
  const main = parseUnit(read('vertex-backup.service')).Service;

  it('sync runs as the backup user, hardened like the backup unit, failures to the notify unit', () => {
    const svc = sync.Service;
    expect(svc.Type).toEqual(['oneshot']);
    expect(svc.ExecStart).toEqual(['/usr/local/bin/vertex-backup sync --quiet']);
    expect(sync.Unit.OnFailure).toEqual(['vertex-backup-notify@%n.service']);
    expect(sync.Unit.After?.join(' ')).toMatch(/network-online\.target/);
    for (const k of ['User', 'Group', 'EnvironmentFile', 'WorkingDirectory', 'NoNewPrivileges', 'ProtectSystem', 'ProtectHome', 'PrivateTmp', 'UMask', 'CapabilityBoundingSet', 'SystemCallFilter']) {
      expect(svc[k], k).toEqual(main[k]);
    }
    expect(svc.ReadWritePaths).toEqual(['/var/backups/vertex-backup']);
  });

  it('fires every 15 minutes, persistent', () => {
    expect(timer.Timer.OnCalendar).toEqual(['*:0/15']);
    expect(timer.Timer.Unit).toEqual(['vertex-backup-sync.service']);
    expect(timer.Timer.Persistent).toEqual(['true']);
    expect(timer.Install.WantedBy).toEqual(['timers.target']);
  });

  analyze.it('systemd computes a run every 15 minutes', () => {
    const r = spawnSync('systemd-analyze', ['calendar', '--iterations=3', '*:0/15'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(r.status, r.stderr).toBe(0);
    const times = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ \S+ (\d\d):(\d\d):00 UTC/g)].map((m) => Number(m[2]));
    expect(times.length).toBe(3);
    for (const m of times) expect(m % 15).toBe(0);
  });
});
