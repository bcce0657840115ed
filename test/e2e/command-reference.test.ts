/**
 * Issue 29, item 13: the command reference (docs/commands.md) and the man pages (man/*.1) are generated
 * from the commander definitions by `npm run docs`; this fails when they are stale (an option added or
 * reworded without regenerating). And `vertex-backup completion bash|zsh` completes what the
 * definitions hold.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeRun, REPO, run } from '../helpers/cli.js';
import { needs } from '../helpers/optional.js';

const needsMan = needs('man', 'man-db');
const needsZsh = needs('zsh', 'zsh');

describe('generated command reference and man pages', () => {
  it('docs/commands.md and man/*.1 are what `npm run docs` writes from the definitions (run it when this fails)', () => {
    const r = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'gen-docs.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
  });

  it('the check notices a stale page: a man page edited by hand, a page of a command that is gone', () => {
    // a copy of the generator beside a copy of the generated files, so the check runs on a scratch tree
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-docs-'));
    try {
      fs.mkdirSync(path.join(root, 'scripts'));
      fs.copyFileSync(path.join(REPO, 'scripts', 'gen-docs.mjs'), path.join(root, 'scripts', 'gen-docs.mjs'));
      fs.symlinkSync(path.join(REPO, 'dist'), path.join(root, 'dist'));
      fs.cpSync(path.join(REPO, 'man'), path.join(root, 'man'), { recursive: true });
      fs.cpSync(path.join(REPO, 'docs'), path.join(root, 'docs'), { recursive: true });
      const check = () => spawnSync(process.execPath, [path.join(root, 'scripts', 'gen-docs.mjs'), '--check'], { encoding: 'utf8' });
      expect(check().status).toBe(0);
      fs.appendFileSync(path.join(root, 'man', 'vertex-backup-create.1'), 'edited\n');
      fs.writeFileSync(path.join(root, 'man', 'vertex-backup-gone.1'), '.TH X 1\n');
      const r = check();
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/man\/vertex-backup-create\.1.*man\/vertex-backup-gone\.1/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('one man page per command, and each option of a command is in its page and in docs/commands.md', () => {
    const md = fs.readFileSync(path.join(REPO, 'docs', 'commands.md'), 'utf8');
    const create = fs.readFileSync(path.join(REPO, 'man', 'vertex-backup-create.1'), 'utf8');
    for (const flag of ['--split-size', '--full-every', '--allow-empty']) {
      expect(create).toContain(flag.replace(/-/g, '-'));
      expect(md).toContain(flag);
    }
    for (const page of ['vertex-backup.1', 'vertex-backup-restore.1', 'vertex-backup-remote-test.1', 'vertex-backup-completion.1']) {
      expect(fs.existsSync(path.join(REPO, 'man', page)), page).toBe(true);
    }
  });

  needsMan.it('man renders the pages without warnings', () => {
    const r = spawnSync('man', ['-l', '--warnings', path.join(REPO, 'man', 'vertex-backup-create.1')], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/vertex-backup create/);
    expect(r.stderr).toBe('');
  });
});

describe('vertex-backup completion', () => {
  async function complete(line: string): Promise<string[]> {
    const script = (await run(['completion', 'bash'], { cwd: REPO })).stdout;
    const words = line.split(' ');
    const bash = `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _vertex_backup; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync('bash', ['-c', bash], { encoding: 'utf8', cwd: REPO });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout.split('\n').filter(Boolean);
  }

  it('bash: commands, subcommands, a command\'s options; a global option\'s value is not taken for the command', async () => {
    expect(await complete('vertex-backup cr')).toEqual(['create']);
    expect(await complete('vertex-backup remote t')).toEqual(['test']);
    expect(await complete('vertex-backup --backup-dir /tmp create --split')).toEqual(['--split-size']);
    expect(await complete('vertex-backup restore --incl')).toEqual(['--include']);
    expect(await complete('vertex-backup restore --target pack')).toContain('package.json');
  });

  it('zsh: a #compdef script; an unknown shell is exit 2', async () => {
    const bad = await run(['completion', 'fish'], { cwd: REPO });
    expect(bad.code, describeRun(bad)).toBe(2);
    expect(bad.stderr).toMatch(/bash.*zsh/);
    const zsh = (await run(['completion', 'zsh'], { cwd: REPO })).stdout;
    expect(zsh).toMatch(/^#compdef vertex-backup/);
  });

  needsZsh.it('zsh loads the script and defines the completion function', async () => {
    const zsh = (await run(['completion', 'zsh'], { cwd: REPO })).stdout;
    const r = spawnSync('zsh', ['-c', `autoload -U compinit && compinit -u; ${zsh}\nwhence -w _vertex_backup`], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/function/);
  });
});
