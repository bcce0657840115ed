/**
 * Issue 26: the status page in real headless Chromium (Debian's, driven by playwright-core: no browser
 * download). Sign-in through the form (the authToken cookie), the newest backups, the "back up now"
 * button and the live update through the event stream; a screenshot is kept as a test artifact.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';
import { type Served, makeToken, serve } from '../helpers/serve.js';

const CHROMIUM = '/usr/bin/chromium';
const chromium = needs(CHROMIUM, 'chromium');
export const ARTIFACTS = path.join(os.tmpdir(), 'vertex-backup-test-artifacts');

let app: AppFixture;
let server: Served;
const tokens: Record<string, string> = {};
let userData: string;

beforeAll(async () => {
  if (!chromium.available) return;
  app = makeApp({ randomBytes: 64 * 1024 });
  const config = path.join(app.cwd, 'config.json');
  const flags = ['--config', config, ...app.flags];
  tokens.trigger = await makeToken(app.cwd, config, 'trigger');
  tokens.read = await makeToken(app.cwd, config, 'read');
  server = await serve(app.cwd, flags);
  userData = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-chromium-'));
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
  rmrf(userData);
});

async function launch() {
  const { chromium: pw } = await import('playwright-core');
  return pw.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 390, height: 844 }, // a phone
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

chromium.describe('status page in headless Chromium', () => {
  chromium.it(
    'signs in, shows the newest backups, backs up on the button and updates live',
    async () => {
      const context = await launch();
      try {
        const page = await context.newPage();
        const requests: string[] = [];
        page.on('request', (r) => requests.push(r.url()));
        await page.goto(server.url);
        // not signed in: the form
        await page.fill('input[name=token]', tokens.trigger);
        await page.click('button[type=submit]');
        await page.waitForSelector('#newest');
        expect(await page.textContent('#newest tr[data-type=full]')).toContain('none');
        // the cookie the form set is HttpOnly: no script on the page can read the token
        expect(await page.evaluate(() => document.cookie)).toBe('');
        // the button posts, the job runs, the event stream reloads the page with the new backup
        await page.click('#backup-now');
        await page.waitForFunction(() => !document.querySelector('#newest tr[data-type=full]')?.textContent?.includes('none'), undefined, { timeout: 30_000 });
        const row = await page.textContent('#newest tr[data-type=full]');
        expect(row).toMatch(/\d{8}_\d{6}/);
        expect(await page.locator('svg#sizes').count()).toBe(1);
        // no external assets: every request went to this server
        for (const u of requests) expect(u.startsWith(server.url)).toBe(true);
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        const shot = path.join(ARTIFACTS, 'status-page.png');
        await page.screenshot({ path: shot, fullPage: true });
        expect(fs.statSync(shot).size).toBeGreaterThan(1000);
      } finally {
        await context.close();
      }
    },
    90_000,
  );

  chromium.it(
    'a read-scoped session has no button',
    async () => {
      const context = await launch();
      try {
        await context.clearCookies();
        const page = await context.newPage();
        await page.goto(server.url);
        await page.fill('input[name=token]', tokens.read);
        await page.click('button[type=submit]');
        await page.waitForSelector('#newest');
        expect(await page.locator('#backup-now').count()).toBe(0);
      } finally {
        await context.close();
      }
    },
    60_000,
  );
});
