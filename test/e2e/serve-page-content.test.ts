/**
 * Issue 26: what the status page says, read over HTTP from the built `serve` after real runs of the
 * built CLI (the Chromium test drives the button and the live reload; this one checks every section):
 * the newest backup of each type against --max-age, the size chart, the last drill's RTO and RPO beside
 * their targets, each remote's replication state, free space, and the last failure with its message.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { type Served, makeToken, serve } from '../helpers/serve.js';

let app: AppFixture;
let fresh: Served;
let stale: Served;
let flags: string[];
let env: Record<string, string>;
let token: string;
let fullId: string;
let dbId: string;

/** The text of the element whose opening tag matches `open` up to its closing tag (the page is flat). */
function section(html: string, open: RegExp, close: string): string {
  const m = open.exec(html);
  if (!m) throw new Error(`no ${open} in the page:\n${html}`);
  const rest = html.slice(m.index);
  return rest.slice(0, rest.indexOf(close) + close.length);
}
const h2 = (html: string, title: string) => {
  const start = html.indexOf(`<h2>${title}`);
  if (start < 0) throw new Error(`no section "${title}" in the page`);
  const end = html.indexOf('<h2>', start + 4);
  return html.slice(start, end < 0 ? undefined : end);
};

beforeAll(async () => {
  app = makeApp({ randomBytes: 32 * 1024 });
  const config = path.join(app.cwd, 'config.json');
  const remotes = path.join(app.cwd, 'remote_storage.json');
  fs.writeFileSync(
    remotes,
    JSON.stringify({ remotes: { nas: { url: `file://${path.join(app.cwd, 'nas')}` }, usb: { url: `file://${path.join(app.cwd, 'usb')}` } } }),
    { mode: 0o600 },
  );
  env = { REMOTES_CONFIG: remotes, XDG_STATE_HOME: path.join(app.cwd, 'state'), RTO_TARGET: '2h', RPO_TARGET: '26h' };
  flags = ['--config', config, ...app.flags];
  token = await makeToken(app.cwd, config, 'read');
  const cli = async (args: string[], extra: Record<string, string> = {}) => {
    const r = await run([...flags, ...args], { cwd: app.cwd, env: { ...env, ...extra } });
    return r;
  };
  const full = await cli(['create', '--type', 'full', '--json']);
  expect(full.code, describeRun(full)).toBe(0);
  fullId = (JSON.parse(full.stdout) as { id: string }).id;
  const drill = await cli(['drill']);
  expect(drill.code, describeRun(drill)).toBe(0);
  const sync = await cli(['sync', '--remote', 'nas']);
  expect(sync.code, describeRun(sync)).toBe(0);
  // made after the sync: nas is one backup behind, usb was never synced
  const db = await cli(['create', '--type', 'database', '--json']);
  expect(db.code, describeRun(db)).toBe(0);
  dbId = (JSON.parse(db.stdout) as { id: string }).id;
  // a run that failed, with its message in backup.log
  const failed = await cli(['create', '--type', 'database'], { BACKUP_HOOK_BEFORE: 'echo the app refused to pause >&2; exit 3' });
  expect(failed.code, describeRun(failed)).not.toBe(0);
  fresh = await serve(app.cwd, flags, ['--max-age', '1h'], env);
  stale = await serve(app.cwd, flags, ['--max-age', '1s'], env);
}, 120_000);

afterAll(async () => {
  await fresh?.stop();
  await stale?.stop();
  rmrf(app?.cwd);
});

const page = async (s: Served) => {
  const r = await fetch(`${s.url}/`, { headers: { authorization: `Bearer ${token}` } });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toContain('text/html');
  return r.text();
};

describe('the status page', () => {
  it('shows the newest backup of each type and its age within --max-age', async () => {
    const html = await page(fresh);
    const newest = section(html, /<table id="newest">/, '</table>');
    expect(h2(html, 'Newest backups')).toMatch(/\(max age 1h/);
    const row = (type: string) => section(newest, new RegExp(`<tr data-type="${type}">`), '</tr>');
    expect(row('full')).toContain(fullId);
    expect(row('database')).toContain(dbId);
    expect(row('storage')).toContain(fullId);
    for (const t of ['full', 'database', 'storage']) {
      expect(row(t)).toContain('class="ok"');
      expect(row(t)).not.toContain('over');
    }
  });

  it('marks a newest backup older than --max-age', async () => {
    // the backups are older than a second by now
    await new Promise((r) => setTimeout(r, 1100));
    const newest = section(await page(stale), /<table id="newest">/, '</table>');
    const row = section(newest, /<tr data-type="database">/, '</tr>');
    expect(row).toContain('class="bad"');
    expect(row).toMatch(/\(over 1s\)/);
  });

  it('draws the sizes over time as inline SVG, one point per backup', async () => {
    const svg = section(await page(fresh), /<svg id="sizes"/, '</svg>');
    expect(svg).toContain('polyline');
    // database: the full's and the later one; storage: the full's
    expect(svg.match(/<circle /g)?.length).toBe(3);
  });

  it("gives the last drill's RTO and RPO beside their targets", async () => {
    const drill = h2(await page(fresh), 'Last restore drill');
    expect(drill).toMatch(/<b class="ok">passed<\/b>/);
    expect(drill).toMatch(/RTO \d[^(]* \(target 2h 00m\)/);
    expect(drill).toMatch(/RPO \S[^(]* \(target 26h 00m\)/);
  });

  it("gives each remote's replication state from its last sync", async () => {
    const remotes = h2(await page(fresh), 'Remotes');
    const nas = section(remotes, /<tr data-remote="nas">/, '</tr>');
    expect(nas).toContain('1 missing');
    expect(nas).toContain('behind');
    expect(section(remotes, /<tr data-remote="usb">/, '</tr>')).toContain('not synced yet');
  });

  it('gives the free space of the backup directory', async () => {
    const disk = section(await page(fresh), /<p id="disk">/, '</p>');
    expect(disk).toMatch(/\d[\d.]* [KMGT]?i?B free at /);
    expect(disk).toContain(app.backupDir);
  });

  it('lists the recent failure with its message', async () => {
    const failures = h2(await page(fresh), 'Recent failures');
    expect(failures).toContain('create');
    expect(failures).toContain('class="bad"');
    expect(failures).toMatch(/hook|before/);
  });

  it('holds no script or style from elsewhere', async () => {
    const html = await page(fresh);
    expect(html).not.toMatch(/<(script|link|img)[^>]+(src|href)=/);
  });
});
