/**
 * A clock that is behind: a board without a battery-backed clock runs the 02:00 timer before NTP has
 * synced, or someone set the date by hand. Ids are timestamps and order the catalog ("latest",
 * keep-last, chains), so the newest backup must not be named as the oldest: rotation would remove it
 * first and restore "latest" would skip it. The planted backup dated 2099 stands for "the clock is now
 * earlier than the newest backup".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, parseJsonStdout, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

/** Renames a database backup to another id, sidecar included, as if it had been made then. */
function redate(backupDir: string, id: string, newId: string): void {
  const dir = path.join(backupDir, 'database');
  for (const name of fs.readdirSync(dir).filter((n) => n.includes(id))) {
    fs.renameSync(path.join(dir, name), path.join(dir, name.replace(id, newId)));
  }
  const sidecar = path.join(dir, `db_backup_${newId}.json`);
  const s = JSON.parse(fs.readFileSync(sidecar, 'utf8'));
  Object.assign(s, { id: newId, timestamp: newId, created_at: '2099-01-01T00:00:00.000Z', backup_path: s.backup_path.replace(id, newId) });
  fs.writeFileSync(sidecar, JSON.stringify(s));
}

describe('a system clock behind the newest backup', () => {
  it('names the new backup after the newest one and says why; latest, keep-last and restore take it', async () => {
    const app = makeApp();
    apps.push(app.cwd);
    const create = async () => {
      const r = await run(['create', '--type', 'database', '--json', ...app.flags], { cwd: app.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      return { out: parseJsonStdout<{ id: string; warnings?: string[] }>(r) };
    };
    const { out: first } = await create();
    redate(app.backupDir, first.id, '20990101_000000');

    // the application's data changes after the planted backup; the new backup must be the one kept
    fs.appendFileSync(path.join(app.cwd, 'marker'), '');
    const { out: second } = await create();
    expect(second.id).toBe('20990101_000000_2');
    expect(second.warnings?.join('\n')).toMatch(/system clock .* is behind the newest backup 20990101_000000: this backup is named 20990101_000000_2/);

    // the terminal says it too
    const human = await run(['create', '--type', 'database', ...app.flags], { cwd: app.cwd });
    expect(human.code, describeRun(human)).toBe(0);
    expect(human.stderr).toMatch(/warning: the system clock .* is behind the newest backup 20990101_000000_2: this backup is named 20990101_000000_3; set the clock/);

    const list = await run(['list', '--type', 'database', '--json', ...app.flags], { cwd: app.cwd });
    const ids = parseJsonStdout<{ id: string }[]>(list).map((b) => b.id);
    expect(ids[0]).toBe('20990101_000000_3');
    const latest = await run(['restore', 'latest', '--target', path.join(app.cwd, 'restored'), '--yes', ...app.flags], { cwd: app.cwd });
    expect(latest.stdout + latest.stderr).toContain('20990101_000000_3');

    const rotate = await run(['rotate', '--max-backups', '1', ...app.flags], { cwd: app.cwd });
    expect(rotate.code, describeRun(rotate)).toBe(0);
    expect(fs.readdirSync(path.join(app.backupDir, 'database')).filter((n) => n.endsWith('.json'))).toEqual(['db_backup_20990101_000000_3.json']);
  });
});
