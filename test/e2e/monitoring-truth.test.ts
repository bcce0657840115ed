/**
 * Issue 13, item 11: status.json tells the truth. A mistyped argument is not a failed run; a
 * configuration error still is; a run killed with SIGKILL is visible to `check` until a run finishes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, readJson, run, start } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';

let app: AppFixture;
const statusFile = () => path.join(app.backupDir, 'status.json');

beforeAll(async () => {
  app = makeApp({ randomBytes: 64 * 1024, events: 100 });
  const r = await run(['create', ...app.flags], { cwd: app.cwd });
  expect(r.code, describeRun(r)).toBe(0);
  const v = await run(['verify', '--all', ...app.flags], { cwd: app.cwd });
  expect(v.code, describeRun(v)).toBe(0);
});
afterAll(() => rmrf(app?.cwd));

describe('argument errors are not job failures', () => {
  it('verify with an unknown id: exit 2, status.json keeps the good verify, check stays green', async () => {
    const before = readJson<{ runs: Record<string, { ok: boolean }> }>(statusFile()).runs.verify;
    const r = await run(['verify', 'nope', ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    const after = readJson<{ runs: Record<string, unknown>; started?: Record<string, unknown> }>(statusFile());
    expect(after.runs.verify).toEqual(before);
    expect(after.started ?? {}).toEqual({});
    const c = await run(['check', ...app.flags], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
  });

  it('an unknown flag is not recorded either', async () => {
    const r = await run(['verify', '--bogus', ...app.flags], { cwd: app.cwd });
    expect(r.code).toBe(2);
    const c = await run(['check', ...app.flags], { cwd: app.cwd });
    expect(c.code, describeRun(c)).toBe(0);
  });

  it('a configuration error (missing database) is still a failed run', async () => {
    const r = await run(['create', '--type', 'database', '--db-path', 'missing.db', '--backup-dir', app.backupDir], { cwd: app.cwd });
    expect(r.code).toBe(2);
    const c = await run(['check', '--json', ...app.flags], { cwd: app.cwd });
    expect(c.code).toBe(1);
    expect(parseJsonStdout<{ reasons: string[] }>(c).reasons.join('\n')).toMatch(/last create --type database failed/);
    // the next good run clears it
    const ok = await run(['create', '--type', 'database', ...app.flags], { cwd: app.cwd });
    expect(ok.code, describeRun(ok)).toBe(0);
    expect((await run(['check', ...app.flags], { cwd: app.cwd })).code).toBe(0);
  });
});

describe('a run killed with SIGKILL', () => {
  needs('xz', 'xz-utils').it('check reports that the last run never finished, until a run finishes', async () => {
    const big = makeApp({ randomBytes: 24 * 1024 * 1024, events: 100 });
    try {
      const first = await run(['create', ...big.flags], { cwd: big.cwd });
      expect(first.code, describeRun(first)).toBe(0);
      const { child, done } = start(['create', '--compression', 'xz', ...big.flags], { cwd: big.cwd });
      const status = path.join(big.backupDir, 'status.json');
      const t0 = Date.now();
      while (Date.now() - t0 < 30_000) {
        const s = fs.existsSync(status) ? readJson<{ started?: Record<string, unknown> }>(status) : {};
        if (s.started?.['create:full']) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill('SIGKILL');
      await done;
      const c = await run(['check', '--json', ...big.flags], { cwd: big.cwd });
      expect(c.code, describeRun(c)).toBe(1);
      expect(parseJsonStdout<{ reasons: string[] }>(c).reasons.join('\n')).toMatch(/last create --type full started at .* never finished/);
      const again = await run(['create', ...big.flags], { cwd: big.cwd });
      expect(again.code, describeRun(again)).toBe(0);
      const c2 = await run(['check', ...big.flags], { cwd: big.cwd });
      expect(c2.code, describeRun(c2)).toBe(0);
    } finally {
      rmrf(big.cwd);
    }
  });
});

describe('a run cut off by a power failure, its pid reused after the reboot', () => {
  it('check still reports it (another boot id, or another process under the pid), and the next run replaces the marker', async () => {
    const { spawn } = await import('node:child_process');
    const { hostname } = await import('node:os');
    // a process that lives on under the dead run's pid, as a daemon started at boot would
    const squatter = spawn('sleep', ['120'], { stdio: 'ignore' });
    try {
      const ticks = Number(fs.readFileSync(`/proc/${squatter.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19]);
      const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      const plant = (identity: Record<string, unknown>) => {
        const s = readJson<Record<string, any>>(statusFile());
        s.started = { 'create:full': { command: 'create', type: 'full', started_at: new Date(Date.now() - 3_600_000).toISOString(), host: hostname(), pid: squatter.pid, ...identity } };
        fs.writeFileSync(statusFile(), JSON.stringify(s));
      };
      const check = () => run(['check', '--json', ...app.flags], { cwd: app.cwd });

      for (const identity of [{ boot_id: 'a-boot-before-the-power-cut', start_ticks: ticks }, { boot_id: boot, start_ticks: ticks - 1 }]) {
        plant(identity);
        const c = await check();
        expect(c.code, `${JSON.stringify(identity)}\n${describeRun(c)}`).toBe(1);
        expect(parseJsonStdout<{ reasons: string[] }>(c).reasons.join('\n')).toMatch(/last create --type full started at .* never finished/);
      }
      // the very process: a run still going, not a failure
      plant({ boot_id: boot, start_ticks: ticks });
      expect((await check()).code).toBe(0);

      // the next run is not held off by the stale marker, and clears it
      plant({ boot_id: 'a-boot-before-the-power-cut', start_ticks: ticks });
      const again = await run(['create', ...app.flags], { cwd: app.cwd });
      expect(again.code, describeRun(again)).toBe(0);
      expect(readJson<{ started?: Record<string, unknown> }>(statusFile()).started ?? {}).toEqual({});
      expect((await check()).code).toBe(0);
    } finally {
      squatter.kill();
    }
  });
});
