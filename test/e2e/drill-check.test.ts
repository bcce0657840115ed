/**
 * Issue 17, item 3: the last drill is recorded in status.json; `check` fails when the last drill failed
 * or is older than --max-drill-age, but only once drills are set up (a drill was recorded, or
 * BACKUP_DRILL_ENABLED=true). The weekly drill is in the schedule table, the crontab and a systemd timer.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Cron } from 'croner';
import { afterAll, describe, expect, it } from 'vitest';
import { SCHEDULE_TABLE, SYSTEMD_DRILL_TIMER } from '../../src/schedule/table.js';
import { describeRun, parseJsonStdout, readJson, REPO, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf, sqlite } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';

type Doc = Record<string, any>;
const apps: AppFixture[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
});

describe('check and the last drill', () => {
  it('no drill ever: check is unaffected; a failed drill fails check; a passed one clears it; --max-drill-age; BACKUP_DRILL_ENABLED=true expects one', async () => {
    const a = makeApp({ randomBytes: 256 * 1024 });
    apps.push(a);
    const c = await run(['create', '--type', 'full', ...a.flags], { cwd: a.cwd });
    expect(c.code, describeRun(c)).toBe(0);

    const before = await run(['check', '--json', ...a.flags], { cwd: a.cwd });
    expect(before.code, describeRun(before)).toBe(0);
    expect(parseJsonStdout<Doc>(before).drill).toBeUndefined();
    const expected = await run(['check', '--json', ...a.flags], { cwd: a.cwd, env: { BACKUP_DRILL_ENABLED: 'true' } });
    expect(expected.code).toBe(1);
    expect(parseJsonStdout<Doc>(expected).reasons.join()).toMatch(/no restore drill recorded .*BACKUP_DRILL_ENABLED=true/);

    // a planted fault: the database copy lost its rows (sidecar resealed, so verify passes)
    const full = readJson<Doc>(path.join(a.backupDir, 'full', fs.readdirSync(path.join(a.backupDir, 'full'))[0]));
    const dbSidecar = path.join(a.backupDir, 'database', `db_backup_${full.database}.json`);
    const original = fs.readFileSync(dbSidecar, 'utf8');
    const dbFile = path.join(a.backupDir, 'database', `db_backup_${full.database}.db`);
    const saved = fs.readFileSync(dbFile);
    sqlite(dbFile, 'DELETE FROM scan_events WHERE id > 10; VACUUM;');
    const s = JSON.parse(original);
    s.checksum = spawnSync('sha256sum', [dbFile], { encoding: 'utf8' }).stdout.split(' ')[0];
    s.file_size = fs.statSync(dbFile).size;
    fs.writeFileSync(dbSidecar, JSON.stringify(s));
    const failed = await run(['drill', '--json', ...a.flags], { cwd: a.cwd });
    expect(failed.code, describeRun(failed)).toBe(3);
    expect(parseJsonStdout<Doc>(failed).problems.join()).toMatch(/table "scan_events" holds 10 rows, 2000 were recorded at backup time/);
    const status = readJson<Doc>(path.join(a.backupDir, 'status.json'));
    expect(status.runs.drill).toMatchObject({ command: 'drill', ok: false, exit_code: 3 });
    expect(status.drill).toMatchObject({ result: 'failed', backup_type: 'full', rto_target_ms: 3_600_000, rpo_target_ms: 4 * 3_600_000 });
    expect(status.drill.problems.join()).toMatch(/scan_events/);

    const afterFail = await run(['check', '--json', ...a.flags], { cwd: a.cwd });
    expect(afterFail.code).toBe(1);
    expect(parseJsonStdout<Doc>(afterFail).reasons.join()).toMatch(/last drill failed at .* \(exit 3\): drill FAILED: .*scan_events/);

    fs.writeFileSync(dbFile, saved);
    fs.writeFileSync(dbSidecar, original);
    const passed = await run(['drill', ...a.flags], { cwd: a.cwd });
    expect(passed.code, describeRun(passed)).toBe(0);
    // a later run of another command keeps the drill's record
    expect((await run(['rotate', ...a.flags], { cwd: a.cwd })).code).toBe(0);
    const ok = await run(['check', '--json', ...a.flags], { cwd: a.cwd });
    expect(ok.code, describeRun(ok)).toBe(0);
    expect(parseJsonStdout<Doc>(ok).drill).toMatchObject({ ok: true, max_age_seconds: 8 * 86_400, last: { result: 'passed' } });
    const human = await run(['check', ...a.flags], { cwd: a.cwd });
    expect(human.stdout).toMatch(/last drill: passed/);

    const old = await run(['check', '--max-drill-age', '1ms', ...a.flags], { cwd: a.cwd });
    expect(old.code).toBe(1);
    expect(old.stderr).toMatch(/the last restore drill finished .* ago \(limit 0s\): run vertex-backup drill/);
    // one type asked about: the other runs (drill included) are not judged
    expect((await run(['check', '--type', 'full', '--max-drill-age', '1ms', ...a.flags], { cwd: a.cwd })).code).toBe(0);
  });
});

describe('the weekly drill is scheduled', () => {
  const unit = (name: string) => fs.readFileSync(path.join(REPO, 'systemd', name), 'utf8');

  it('the schedule table, the crontab and the systemd units agree', () => {
    expect(SCHEDULE_TABLE.drill.args).toEqual(['drill']);
    const cron = fs.readFileSync(path.join(REPO, 'cron', 'vertex-backup.cron'), 'utf8');
    expect(cron).toMatch(new RegExp(`^${SCHEDULE_TABLE.drill.cron.replace(/\*/g, '\\*')}\\s+vertex-backup .* drill --wait 3600 --quiet$`, 'm'));
    expect(unit('vertex-backup-drill.timer')).toMatch(new RegExp(`^OnCalendar=${SYSTEMD_DRILL_TIMER.onCalendar.replace(/\*/g, '\\*')}$`, 'm'));
    expect(unit('vertex-backup-drill.timer')).toMatch(/^Unit=vertex-backup-drill\.service$/m);
    const exec = /^ExecStart=\S+ (.*)$/m.exec(unit('vertex-backup-drill.service'))?.[1].split(' ');
    expect(exec?.filter((x, i, xs) => x !== '--wait' && xs[i - 1] !== '--wait')).toEqual(SYSTEMD_DRILL_TIMER.args);
    expect(unit('vertex-backup-drill.service')).toMatch(/^OnFailure=vertex-backup-notify@%n\.service$/m);
  });

  needs('systemd-analyze', 'systemd').it('the timer and the cron expression name the same times (systemd-analyze calendar)', () => {
    const from = new Date();
    const r = spawnSync('systemd-analyze', ['calendar', '--iterations=3', SYSTEMD_DRILL_TIMER.onCalendar], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(r.status, r.stderr).toBe(0);
    const systemd = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC/g)].map((m) => new Date(`${m[1].replace(' ', 'T')}Z`).toISOString());
    const cron = new Cron(SCHEDULE_TABLE.drill.cron, { paused: true, timezone: 'UTC' }).nextRuns(3, from).map((d) => d.toISOString());
    expect(systemd).toEqual(cron);
  });
});
