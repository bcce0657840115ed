import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cron } from 'croner';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.join(REPO, 'bin', 'vertex-backup.js');
const TEXT = fs.readFileSync(path.join(REPO, 'cron', 'vertex-backup.cron'), 'utf8');

interface Job {
  line: number;
  schedule: string;
  argv: string[];
}

/** Splits the crontab the way cron reads it: comments, NAME=value lines, and five fields + command. */
function parseCrontab(text: string) {
  const env: Record<string, string> = {};
  const jobs: Job[] = [];
  const bad: string[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const envLine = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (envLine) {
      env[envLine[1]] = envLine[2];
      return;
    }
    const fields = line.split(/\s+/);
    if (fields.length < 6) {
      bad.push(`line ${i + 1}: ${line}`);
      return;
    }
    jobs.push({ line: i + 1, schedule: fields.slice(0, 5).join(' '), argv: fields.slice(5) });
  });
  return { env, jobs, bad };
}

const { env, jobs, bad } = parseCrontab(TEXT);

function job(sub: string, type?: string): Job {
  const found = jobs.filter((j) => j.argv.includes(sub) && (!type || j.argv.join(' ').includes(`--type ${type}`)));
  expect(found, `${sub} ${type ?? ''}`).toHaveLength(1);
  return found[0];
}

function help(args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [BIN, ...args, '--help'], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: REPO } });
  return { code: r.status, out: r.stdout + r.stderr };
}

describe('cron/vertex-backup.cron', () => {
  it('has only comments, environment lines and job lines', () => {
    expect(bad).toEqual([]);
    // create ×3, rotate, drill, check, and the 15-minute sync
    expect(jobs).toHaveLength(7);
  });

  it('every schedule parses with a real cron parser and uses only plain cron syntax', () => {
    for (const j of jobs) {
      // croner in strict five-field mode; its extensions (L, W, #, ?) would not work in Vixie cron
      expect(() => new Cron(j.schedule, { mode: '5-part', paused: true }).stop(), `line ${j.line}`).not.toThrow();
      for (const f of j.schedule.split(' ')) expect(f, `line ${j.line}`).toMatch(/^[\d*/,-]+$/);
    }
  });

  it("is the seed's schedule", () => {
    const from = new Date('2024-01-06T12:00:00'); // a Saturday noon, local time
    const next = (j: Job, n = 1) => new Cron(j.schedule, { paused: true }).nextRuns(n, from);
    const hm = (d: Date) => `${d.getDay()} ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;

    expect(job('create', 'full').schedule).toBe('0 2 * * *');
    expect(next(job('create', 'full'), 2).map(hm)).toEqual(['0 02:00', '1 02:00']);
    expect(next(job('create', 'database'), 4).map(hm)).toEqual(['6 18:00', '0 00:00', '0 06:00', '0 12:00']);
    expect(next(job('create', 'storage'), 2).map((d) => d.toDateString())).toEqual(['Sun Jan 07 2024', 'Sun Jan 14 2024']);
    expect(next(job('create', 'storage'))[0].getHours()).toBe(3);
    expect(job('rotate').schedule).toBe('0 4 * * *');
    expect(job('check').schedule).toBe('0 5 * * *');
  });

  it('sets the environment the jobs need', () => {
    expect(env.SHELL).toBe('/bin/sh');
    // the units install the binary in /usr/local/bin; cron's default PATH lacks it
    expect(env.PATH.split(':')).toContain('/usr/local/bin');
    for (const k of ['BACKUP_DIR', 'DATABASE_PATH', 'STORAGE_PATH', 'NOTIFY_ON']) expect(env[k], k).toMatch(/\S/);
    expect(env.NOTIFY_ON).toMatch(/^(failure|always)$/);
    // no secrets in a crontab
    expect(Object.keys(env).filter((k) => /TOKEN|SECRET|PASSWORD/.test(k))).toEqual([]);
  });

  it('runs only vertex-backup commands and options that exist', () => {
    const programHelp = help([]);
    expect(programHelp.code, programHelp.out).toBe(0);
    for (const j of jobs) {
      expect(j.argv[0], `line ${j.line}`).toBe('vertex-backup');
      const args = j.argv.slice(1);
      // global options (with their values) come before the subcommand in these lines
      const sub = args.find((a, i) => !a.startsWith('-') && !(i > 0 && args[i - 1] === '--env-file'))!;
      const h = help([sub]);
      expect(h.code, `${sub}: ${h.out}`).toBe(0);
      expect(h.out, `line ${j.line}: '${sub}' is not a vertex-backup command`).toContain(`Usage: vertex-backup ${sub}`);
      for (const flag of args.filter((a) => a.startsWith('--'))) {
        const listed = h.out.includes(`${flag} `) || h.out.includes(`${flag}\n`) || programHelp.out.includes(`${flag} `);
        expect(listed, `line ${j.line}: ${flag} is not an option of '${sub}'`).toBe(true);
      }
    }
  });

  it('the option check itself rejects what does not exist', () => {
    const h = help(['no-such-command']);
    expect(h.out).not.toContain('Usage: vertex-backup no-such-command');
  });
});
