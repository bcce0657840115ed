/**
 * Issue 13, item 7: one schedule table. The scheduler's defaults, the shipped crontab and the systemd
 * timer say the same thing; this test reads the shipped files and compares them with the table.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cron } from 'croner';
import { describe, expect, it } from 'vitest';
import { loadJobSpecs } from '../../src/schedule/config.js';
import { CRON_ONLY_JOBS, PIT_JOB, SCHEDULE_TABLE, SYSTEMD_TIMER } from '../../src/schedule/table.js';
import { needs } from '../helpers/optional.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The crontab's job lines: schedule and vertex-backup arguments, without --env-file/--wait/--quiet. */
function cronJobs(): { schedule: string; args: string[] }[] {
  const text = fs.readFileSync(path.join(REPO, 'cron', 'vertex-backup.cron'), 'utf8');
  const jobs: { schedule: string; args: string[] }[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#') || /^[A-Z_]+=/.test(line)) continue;
    const f = line.trim().split(/\s+/);
    const argv = f.slice(6); // after the five time fields and the program
    const args: string[] = [];
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === '--env-file' || argv[i] === '--wait') i++;
      else if (argv[i] !== '--quiet') args.push(argv[i]);
    }
    jobs.push({ schedule: f.slice(0, 5).join(' '), args });
  }
  return jobs;
}

describe('one schedule table', () => {
  it('the scheduler defaults are the table', () => {
    const jobs = loadJobSpecs({});
    for (const j of jobs) {
      // the page-delta job runs every 30 s: the scheduler and the systemd timer carry it, cron cannot
      const row = j.name === 'pit' ? PIT_JOB : SCHEDULE_TABLE[j.name];
      expect([j.name, j.schedule, j.args]).toEqual([j.name, row.cron, [...row.args]]);
    }
  });

  it('the crontab has exactly the table, each job once', () => {
    const want = [...Object.values(SCHEDULE_TABLE), ...Object.values(CRON_ONLY_JOBS)].map((j) => ({ schedule: j.cron, args: [...j.args] }));
    const sort = (xs: { schedule: string; args: string[] }[]) => [...xs].sort((a, b) => a.args.join(' ').localeCompare(b.args.join(' ')));
    expect(sort(cronJobs())).toEqual(sort(want));
  });

  it('the systemd timer runs the full job at the table time', () => {
    const timer = fs.readFileSync(path.join(REPO, 'systemd', 'vertex-backup.timer'), 'utf8');
    expect(timer).toMatch(new RegExp(`^OnCalendar=${SYSTEMD_TIMER.onCalendar.replace(/[*]/g, '\\*')}$`, 'm'));
    const service = fs.readFileSync(path.join(REPO, 'systemd', 'vertex-backup.service'), 'utf8');
    const exec = /^ExecStart=\S+ (.*)$/m.exec(service)?.[1].split(' ');
    expect(exec).toEqual(SYSTEMD_TIMER.args);
    expect(SYSTEMD_TIMER.args.slice(0, 3)).toEqual([...SCHEDULE_TABLE[SYSTEMD_TIMER.job].args]);
  });

  needs('systemd-analyze', 'systemd').it('the timer and the cron expression name the same times (systemd-analyze calendar)', () => {
    const from = new Date();
    const r = spawnSync('systemd-analyze', ['calendar', '--iterations=3', SYSTEMD_TIMER.onCalendar], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
    expect(r.status, r.stderr).toBe(0);
    const systemd = [...r.stdout.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC/g)].map((m) => new Date(`${m[1].replace(' ', 'T')}Z`).toISOString());
    const cron = new Cron(SCHEDULE_TABLE[SYSTEMD_TIMER.job].cron, { paused: true, timezone: 'UTC' }).nextRuns(3, from).map((d) => d.toISOString());
    expect(systemd).toEqual(cron);
  });
});
