/**
 * Issue 13, item 8: every `vertex-backup …` command in the sh blocks of README.md and of the docs/ pages
 * it was split into (issue 29, item 13) is run, in the order of PAGES,
 * against a fixture application laid out with the documented defaults (./app_data/app_data.db,
 * ./storage, ./backups). An example that stops working (a renamed flag, a changed default, a broken
 * command) fails here. Remotes named in the examples (nas, s3, yandex) are file:// remotes on this disk;
 * the placeholder id 20240101_120000 stands for the newest real full backup.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, REPO, run } from '../helpers/cli.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { type Need, needs } from '../helpers/optional.js';

/**
 * The pages whose examples this test runs, in the order a reader meets them (later examples use the
 * backups earlier ones made). A docs/ page with `vertex-backup` examples that is not here must be named
 * by the test that runs them (see the last test below).
 */
const PAGES = [
  'README.md',
  'docs/backing-up.md',
  'docs/browsing.md',
  'docs/list-and-verify.md',
  'docs/restore.md',
  'docs/drills.md',
  'docs/restore-by-hand.md',
  'docs/rotation.md',
  'docs/scheduling.md',
  'docs/monitoring.md',
  'docs/encryption.md',
  'docs/remotes.md',
];

/** The command lines of a page's sh/bash blocks, comments stripped. */
function pageExamples(page: string): string[] {
  const text = fs.readFileSync(path.join(REPO, page), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)) {
    for (const line of m[1].split('\n')) {
      const l = line.replace(/\s+#.*$/, '').trim();
      if (/^vertex-backup\b/.test(l)) out.push(l);
    }
  }
  return out;
}

function argv(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]).slice(1);
}

/** Examples that cannot finish on their own, with the reason; everything else must run. */
const NOT_RUN: Record<string, string> = {};
/** Examples whose documented outcome is not exit 0. */
const EXPECTED_EXIT: Record<string, number> = {
  // "asks first": without a terminal it refuses (exit 2) and says to pass --yes
  'vertex-backup restore latest': 2,
};

const CODEC_PROGRAMS: Record<string, Need> = { zstd: needs('zstd', 'zstd'), xz: needs('xz', 'xz-utils'), bzip2: needs('bzip2', 'bzip2') };

let app: AppFixture;
const examples = PAGES.flatMap(pageExamples);

beforeAll(() => {
  app = makeApp({ randomBytes: 128 * 1024, events: 200 });
  // the paths the browsing examples name (a restore --include of nothing is exit 2)
  fs.mkdirSync(path.join(app.storagePath, 'images', '2024'), { recursive: true });
  fs.writeFileSync(path.join(app.storagePath, 'images', '2024', 'beach.jpg'), 'jpeg bytes\n');
  fs.writeFileSync(path.join(app.storagePath, 'notes.txt'), 'notes\n');
  const remote = (name: string) => {
    const d = path.join(app.cwd, 'remotes', name);
    fs.mkdirSync(d, { recursive: true });
    return { url: `file://${d}` };
  };
  fs.writeFileSync(path.join(app.cwd, 'remote_storage.json'), JSON.stringify({ remotes: { nas: remote('nas'), s3: remote('s3'), yandex: remote('yandex') } }));
});
afterAll(() => rmrf(app?.cwd));

/** The text of every test file except this one. */
function testSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.test\.ts$/.test(e.name) && p !== __filename) out.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(REPO, 'test'));
  return out;
}

async function newestFullId(): Promise<string | undefined> {
  const r = await run(['list', '--type', 'full', '--json'], { cwd: app.cwd });
  return (JSON.parse(r.stdout) as { id: string; status: string }[]).find((b) => b.status === 'ok')?.id;
}

describe('README examples', () => {
  it('the README and the docs pages have the examples this test runs', () => {
    expect(examples.length).toBeGreaterThanOrEqual(30);
    for (const page of PAGES) expect(fs.existsSync(path.join(REPO, page)), page).toBe(true);
  });

  it('every docs/ page with vertex-backup examples is run: listed here, or named by the test file that runs them', () => {
    const tests = testSources();
    const unrun = fs
      .readdirSync(path.join(REPO, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`)
      .filter((page) => pageExamples(page).length && !PAGES.includes(page) && !tests.some((t) => t.includes(page)));
    expect(unrun, 'add them to PAGES, or run them in a test that names the page').toEqual([]);
  });

  it.for(examples)('%s', async (line, ctx) => {
    if (NOT_RUN[line]) return;
    let args = argv(line);
    // an example with an optional codec follows the rule of test/helpers/optional.ts
    const codec = args[args.indexOf('--compression') + 1];
    if (args.includes('--compression')) CODEC_PROGRAMS[codec!]?.require(ctx);
    if (args.some((a) => a.startsWith('/mnt/usb/storage_backup_'))) {
      // a copy of one archive restores the tree only when it is a level 0 (a level N is refused: the test below)
      const r = await run(['list', '--type', 'storage', '--json'], { cwd: app.cwd });
      const level0 = (JSON.parse(r.stdout) as { id: string; status: string; level?: number }[]).find((b) => b.status === 'ok' && !b.level)?.id;
      args = args.map((a) => a.replaceAll('20240101_120000', level0!));
    }
    if (args.some((a) => a.includes('20240101_120000'))) {
      const id = await newestFullId();
      expect(id, 'a full backup made by an earlier example').toBeTruthy();
      args = args.map((a) => a.replaceAll('20240101_120000', id!));
    }
    args = args.map((a) => (a === '/tmp/check' ? path.join(app.cwd, 'check') : a));
    // the shell would expand "~"; the encryption examples name one key file and placeholder recipients
    const home = path.join(app.cwd, 'home');
    fs.mkdirSync(home, { recursive: true });
    const keyFile = path.join(home, 'vertex-backup-key.txt');
    args = args.map((a) => (a.startsWith('~/') ? path.join(home, a.slice(2)) : a === 'old-key.txt' ? keyFile : a));
    if (args.some((a) => /^age1\w*…$/.test(a))) {
      const pub = /age1[0-9a-z]+/.exec(fs.readFileSync(keyFile, 'utf8'))![0];
      args = args.map((a) => (/^age1\w*…$/.test(a) ? pub : a));
    }
    // "/mnt/usb": a copy of a backup file made by hand outside the backup directory
    args = args.map((a) => {
      if (!a.startsWith('/mnt/usb/')) return a;
      const usb = path.join(app.cwd, 'usb');
      fs.mkdirSync(usb, { recursive: true });
      const name = path.basename(a);
      fs.copyFileSync(path.join(app.cwd, 'backups', 'storage', name), path.join(usb, name));
      return path.join(usb, name);
    });
    // "> FILE": the shell's redirection; the run captures stdout instead
    const redirect = args.indexOf('>');
    if (redirect >= 0) args = args.slice(0, redirect);
    const r = await run(args, { cwd: app.cwd, timeoutMs: 120_000 });
    expect(r.code, describeRun(r)).toBe(EXPECTED_EXIT[line] ?? 0);
    expect(r.stderr, describeRun(r)).not.toMatch(/unknown option|unknown command|    at .*\.js:\d+/);
  });
});

describe('README: "Back up your own app"', () => {
  const readme = () => fs.readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = () => readme().slice(readme().indexOf('## Back up your own app'));
  /** The README's paths moved under a scratch application. */
  const place = (text: string, a: AppFixture) =>
    text
      .replaceAll('/srv/vertex/app_data/app_data.db', a.dbPath)
      .replaceAll('/srv/vertex/storage', a.storagePath)
      .replaceAll('/var/backups/vertex', path.join(a.cwd, 'var-backups'));

  it('the .env form, as printed, makes a full backup that keeps MAX_BACKUPS', async () => {
    const a = makeApp({ randomBytes: 16 * 1024, events: 20 });
    try {
      const ini = /```ini\n([\s\S]*?)```/.exec(section())![1];
      for (const key of ['DATABASE_PATH', 'STORAGE_PATH', 'BACKUP_DIR', 'MAX_BACKUPS', 'TELEGRAM_BOT_TOKEN', 'TELEGRAM_CHAT_ID']) expect(ini).toMatch(new RegExp(`^${key}=`, 'm'));
      fs.writeFileSync(path.join(a.cwd, '.env'), place(ini, a), { mode: 0o600 });
      const r = await run(['create', '--json'], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      expect(fs.readdirSync(path.join(a.cwd, 'var-backups', 'full'))).toHaveLength(1);
      const cfg = await run(['rotate', '--dry-run', '--json'], { cwd: a.cwd });
      expect(JSON.parse(cfg.stdout).policy).toMatchObject({ keep_last: 14 });
    } finally {
      rmrf(a.cwd);
    }
  });

  it('the config-file form, as printed, is accepted and means the same', async () => {
    const a = makeApp({ randomBytes: 16 * 1024, events: 20 });
    try {
      const json = /```json\n([\s\S]*?)```/.exec(section())![1];
      const file = path.join(a.cwd, 'vertex-backup.json');
      fs.writeFileSync(file, place(json, a), { mode: 0o600 });
      const r = await run(['create', '--config', file, '--json'], { cwd: a.cwd });
      expect(r.code, describeRun(r)).toBe(0);
      expect(fs.readdirSync(path.join(a.cwd, 'var-backups', 'full'))).toHaveLength(1);
    } finally {
      rmrf(a.cwd);
    }
  });
});
