/**
 * Naming a file that is not UTF-8 on the command line (dump, ls, restore --include): typed the way `ls`
 * shows it (`caf\xe9.jpg`), or as raw bytes completed by the shell's Tab, which Node's argv turns into
 * U+FFFD (the bytes are read back from /proc/self/cmdline).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, baseEnv, describeRun, run } from '../helpers/cli.js';
import { makeApp, rmrf } from '../helpers/fixtures.js';

const apps: string[] = [];
afterAll(() => apps.forEach(rmrf));

describe('names that are not UTF-8 as arguments', () => {
  it('dump, ls and restore --include find caf\\xe9.jpg typed as ls shows it and as raw bytes', async () => {
    const app = makeApp();
    apps.push(app.cwd);
    const latin = Buffer.from(`${app.storagePath}/caf\xe9.jpg`, 'latin1');
    fs.writeFileSync(latin, 'latin-1 named photo');
    const created = await run(['create', '--type', 'storage', ...app.flags], { cwd: app.cwd });
    expect(created.code, describeRun(created)).toBe(0);

    const shown = await run(['ls', 'latest', 'caf\\xe9.jpg', ...app.flags], { cwd: app.cwd });
    expect(shown.code, describeRun(shown)).toBe(0);
    expect(shown.stdout).toContain('caf\\xe9.jpg');

    const dumped = await run(['dump', 'latest', 'caf\\xe9.jpg', ...app.flags], { cwd: app.cwd });
    expect(dumped.code, describeRun(dumped)).toBe(0);
    expect(dumped.stdout).toBe('latin-1 named photo');

    // raw bytes, as bash passes them after Tab completion
    const flags = app.flags.map((f) => `'${f}'`).join(' ');
    const raw = spawnSync('bash', ['-c', `node '${BIN}' dump latest "$(printf 'caf\\xe9.jpg')" ${flags}`], { cwd: app.cwd, env: baseEnv(app.cwd) });
    expect(raw.status, raw.stderr.toString()).toBe(0);
    expect(raw.stdout.toString()).toBe('latin-1 named photo');

    const target = path.join(app.cwd, 'partial');
    const restored = await run(['restore', 'latest', '--include', 'caf\\xe9.jpg', '--target', target, '--yes', ...app.flags], { cwd: app.cwd });
    expect(restored.code, describeRun(restored)).toBe(0);
    expect(fs.readFileSync(Buffer.from(`${target}/storage/caf\xe9.jpg`, 'latin1'), 'utf8')).toBe('latin-1 named photo');
  });
});
