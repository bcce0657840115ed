/**
 * Issue 22 item 4: the library is exported (serve, programs importing it), so its error hints say what
 * to change in its own words; the command line words the same remedy with its flags (src/cli/remedies.ts).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliHint } from '../../src/cli/remedies.js';
import { needIdentity } from '../../src/crypto/age-artifact.js';
import { BackupError, toBackupError } from '../../src/errors.js';
import { refuseForeignLink } from '../../src/ops/live-links.js';
import { tempDir } from '../helpers/fixtures.js';

describe('remedies: flags only in src/cli', () => {
  it('a missing key: the library hint names no flag, the command line names --identity', () => {
    const e = needIdentity({ subject: 'storage backup 20260101_000000', info: { format: 'age', recipients: ['age1xyz'], plaintext_size: 0 } });
    expect(e.hint).not.toMatch(/--[a-z]/);
    expect(e.hint).toContain('AGE_IDENTITY_FILE');
    expect(cliHint(e)).toBe('pass the identity file with --identity FILE (or AGE_IDENTITY_FILE; a passphrase with AGE_PASSPHRASE_FILE)');
  });

  it('a full disk: rotate in library words, --max-backups on the command line', () => {
    const e = toBackupError(Object.assign(new Error('write'), { code: 'ENOSPC' }), 'create');
    expect(e.code).toBe('NO_SPACE');
    expect(e.hint).not.toMatch(/--[a-z]/);
    expect(cliHint(e)).toContain('rotate --max-backups N');
  });

  it('a remedy with a blank: the path of a planted link goes into the command-line hint', async () => {
    if (process.getuid?.() !== 0) return; // a link owned by another user needs root to make
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'real'));
    fs.chownSync(path.join(dir, 'real'), 0, 0);
    const link = path.join(dir, 'storage');
    fs.symlinkSync(path.join(dir, 'real'), link);
    fs.lchownSync(link, 65534, 65534);
    const err = (await refuseForeignLink(link, 'storage').catch((e: unknown) => e)) as BackupError;
    expect(err).toBeInstanceOf(BackupError);
    expect(err.hint).not.toMatch(/--[a-z]/);
    expect(cliHint(err)).toBe(`check who replaced ${link}; set the real path with --storage-path, or use --target DIR`);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an error without a remedy keeps its own hint', () => {
    expect(cliHint(new BackupError('USAGE', 'x', { hint: 'chmod 600 f' }))).toBe('chmod 600 f');
    expect(cliHint(new BackupError('USAGE', 'x'))).toBeUndefined();
  });

  it('no hint of the library below src/cli names a flag where a remedy is attached', () => {
    // every `remedy:` in the library sits next to a hint in its own words
    const offenders: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'cli') walk(p);
        } else if (p.endsWith('.ts')) {
          const lines = fs.readFileSync(p, 'utf8').split('\n');
          lines.forEach((l, i) => {
            if (!/remedy: ['{]/.test(l)) return;
            const near = lines.slice(Math.max(0, i - 2), i + 1).join('\n');
            const hint = /hint: (['`])(.*?)\1/.exec(near)?.[2];
            if (hint && /--[a-z]/.test(hint)) offenders.push(`${p}:${i + 1}: ${hint}`);
          });
        }
      }
    };
    walk(new URL('../../src', import.meta.url).pathname);
    expect(offenders).toEqual([]);
  });
});
