/**
 * Issue 24, hooks: before/after/onError around a backup, beforeRestore/afterRestore around a restore,
 * as the built binary runs them. A failing before hook means no backup; after hooks always run; a hook
 * that hangs is killed at its timeout with everything it started; output goes to backup.log with
 * secrets masked.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';

const TOKEN = '999999:HOOKSECRETTOKEN';
let app: AppFixture;
let marks: string;

beforeAll(() => {
  app = makeApp({ events: 50, minimalStorage: true });
  marks = path.join(app.cwd, 'marks');
  fs.mkdirSync(marks);
});
afterAll(() => rmrf(app?.cwd));

function config(name: string, hooks: unknown): string {
  const file = path.join(app.cwd, name);
  fs.writeFileSync(file, JSON.stringify({ hooks }), { mode: 0o600 });
  return file;
}

const logLines = () =>
  fs
    .readFileSync(path.join(app.backupDir, 'backup.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

const sidecars = (type: string) => (fs.existsSync(path.join(app.backupDir, type)) ? fs.readdirSync(path.join(app.backupDir, type)).filter((f) => f.endsWith('.json')) : []);

describe('hooks around create', () => {
  it('before (shell string) and after (argv) run with the backup in their environment; output in backup.log, secrets masked', async () => {
    const cfg = config('ok.json', {
      before: `echo "before $VERTEX_BACKUP_TYPE token=$TELEGRAM_BOT_TOKEN"; echo before > ${marks}/before`,
      after: ['/bin/sh', '-c', `printf '%s\\n' "$VERTEX_BACKUP_RESULT $VERTEX_BACKUP_ID" > ${marks}/after; printf '%s\\n' "$VERTEX_BACKUP_PATHS" > ${marks}/paths`],
    });
    const r = await run(['create', '--type', 'storage', '--config', cfg, ...app.flags], { cwd: app.cwd, env: { TELEGRAM_BOT_TOKEN: TOKEN, TELEGRAM_CHAT_ID: '1', TELEGRAM_API_URL: 'http://127.0.0.1:9' } });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.readFileSync(path.join(marks, 'before'), 'utf8')).toBe('before\n');
    const [result, id] = fs.readFileSync(path.join(marks, 'after'), 'utf8').trim().split(' ');
    expect(result).toBe('ok');
    expect(sidecars('storage')).toContain(`storage_backup_${id}.json`);
    expect(fs.readFileSync(path.join(marks, 'paths'), 'utf8')).toContain(`storage_backup_${id}.json`);
    expect(r.stderr).toContain('before hook');
    expect(r.stderr).toContain('| before storage token=***');
    const last = logLines().at(-1)!;
    const hooks = last.hooks as { event: string; ok: boolean; output?: string[] }[];
    expect(hooks.map((h) => [h.event, h.ok])).toEqual([
      ['before', true],
      ['after', true],
    ]);
    expect(hooks[0].output).toEqual(['before storage token=***']);
    expect(fs.readFileSync(path.join(app.backupDir, 'backup.log'), 'utf8')).not.toContain('HOOKSECRETTOKEN');
  });

  it('a failing before hook means no backup: its exit code and last lines are reported, after and onError still run', async () => {
    const before = sidecars('storage').length;
    const cfg = config('fail.json', {
      before: 'echo "cannot stop the service"; exit 7',
      after: `echo "$VERTEX_BACKUP_RESULT" > ${marks}/after-fail`,
      onError: `echo "$VERTEX_BACKUP_ERROR" > ${marks}/onerror`,
    });
    const r = await run(['create', '--type', 'storage', '--config', cfg, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stderr).toMatch(/before hook .* failed \(exit code 7\).*no backup was made.*cannot stop the service/);
    expect(sidecars('storage').length).toBe(before);
    expect(fs.readFileSync(path.join(marks, 'after-fail'), 'utf8')).toBe('failed\n');
    expect(fs.readFileSync(path.join(marks, 'onerror'), 'utf8')).toMatch(/exit code 7/);
    expect(String(logLines().at(-1)!.error)).toMatch(/exit code 7/);
  });

  it('a hook that hangs is killed at its timeout, with the process group it started', async () => {
    const pidFile = path.join(marks, 'grandchild.pid');
    const cfg = config('hang.json', { before: { command: `sleep 300 & echo $! > ${pidFile}; wait`, timeout: '1s' } });
    const r = await run(['create', '--type', 'storage', '--config', cfg, ...app.flags], { cwd: app.cwd, timeoutMs: 20_000 });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stderr).toMatch(/killed after its timeout of 1 s/);
    expect(r.ms).toBeLessThan(15_000);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 30 && alive(); i++) await new Promise((res) => setTimeout(res, 100));
    expect(alive()).toBe(false);
  });

  it('BACKUP_HOOK_BEFORE / BACKUP_HOOK_AFTER from the environment', async () => {
    const r = await run(['create', '--type', 'storage', ...app.flags], {
      cwd: app.cwd,
      env: { BACKUP_HOOK_BEFORE: `touch ${marks}/env-before`, BACKUP_HOOK_AFTER: `touch ${marks}/env-after` },
    });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.existsSync(path.join(marks, 'env-before')) && fs.existsSync(path.join(marks, 'env-after'))).toBe(true);
  });

  it('a failing after hook: the backup is kept, exit 1, the summary says which hook', async () => {
    const before = sidecars('storage').length;
    const cfg = config('after-fail.json', { after: 'exit 3' });
    const r = await run(['create', '--type', 'storage', '--config', cfg, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(1);
    expect(sidecars('storage').length).toBe(before + 1);
    expect(r.stderr).toMatch(/after hook `exit 3` failed \(exit code 3\)/);
  });

  it('a bad hooks section is a configuration error (exit 2) before anything runs', async () => {
    const cfg = config('bad.json', { befor: 'true' });
    const r = await run(['create', '--type', 'storage', '--config', cfg, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(2);
    expect(r.stderr).toMatch(/hooks\.befor' is not a hook event/);
  });
});

describe('hooks around restore', () => {
  it('beforeRestore runs before the swap, afterRestore after it, with the restored paths', async () => {
    const target = path.join(app.cwd, 'restored');
    const cfg = config('restore.json', {
      beforeRestore: `test ! -e ${target}/storage && echo "$VERTEX_BACKUP_PATHS" > ${marks}/br`,
      afterRestore: `test -d ${target}/storage && echo "$VERTEX_BACKUP_RESULT" > ${marks}/ar`,
    });
    const r = await run(['restore', 'latest', '--target', target, '--yes', '--config', cfg, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(fs.readFileSync(path.join(marks, 'br'), 'utf8').trim()).toBe(path.join(target, 'storage'));
    expect(fs.readFileSync(path.join(marks, 'ar'), 'utf8')).toBe('ok\n');
  });

  it('a failing beforeRestore hook: nothing restored, afterRestore still runs', async () => {
    const target = path.join(app.cwd, 'restored-2');
    const cfg = config('restore-fail.json', { beforeRestore: 'exit 5', afterRestore: `touch ${marks}/ar2` });
    const r = await run(['restore', 'latest', '--target', target, '--yes', '--config', cfg, ...app.flags], { cwd: app.cwd });
    expect(r.code, describeRun(r)).toBe(1);
    expect(r.stderr).toMatch(/beforeRestore hook .* nothing was restored/);
    expect(fs.existsSync(path.join(target, 'storage'))).toBe(false);
    expect(fs.existsSync(path.join(marks, 'ar2'))).toBe(true);
  });
});
