/**
 * Issue 23, configuration: the forms of DATABASE_URL an operator writes (postgres:// and postgresql://,
 * a Unix socket directory, `all`), and the warning libpq's silence hides: a .pgpass readable by group or
 * others is ignored by libpq without a word.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { libpqEnv, parsePostgresUrl } from '../../src/postgres-settings.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pgset-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('parsePostgresUrl', () => {
  it('reads postgres:// and postgresql://, host, port, user and database', () => {
    for (const scheme of ['postgres', 'postgresql']) {
      const s = parsePostgresUrl(`${scheme}://app@db.example:6543/dart_cloud`, { env: { HOME: dir } });
      expect([s.host, s.port, s.user, s.database, s.databases]).toEqual(['db.example', '6543', 'app', 'dart_cloud', ['dart_cloud']]);
    }
  });

  it('a Unix socket directory: host=/var/run/postgresql, with or without a user', () => {
    const a = parsePostgresUrl('postgresql://postgres@/app?host=/var/run/postgresql', { env: { HOME: dir } });
    expect([a.host, a.user, a.database]).toEqual(['/var/run/postgresql', 'postgres', 'app']);
    const b = parsePostgresUrl('postgresql:///app?host=/run/postgresql&port=5433', { env: { HOME: dir } });
    expect([b.host, b.port, b.user, b.database]).toEqual(['/run/postgresql', '5433', undefined, 'app']);
    expect(libpqEnv(b, 'app', {}).PGHOST).toBe('/run/postgresql');
  });

  it('several databases and `all`', () => {
    expect(parsePostgresUrl('postgresql://u@h/p', { databases: 'dart_cloud, functions_db', env: { HOME: dir } }).databases).toEqual([
      'dart_cloud',
      'functions_db',
    ]);
    expect(parsePostgresUrl('postgresql://u@h/p', { databases: ['a', 'b'], env: { HOME: dir } }).databases).toEqual(['a', 'b']);
    expect(parsePostgresUrl('postgresql://u@h/p', { databases: 'ALL', env: { HOME: dir } }).databases).toBe('all');
  });

  it('a .pgpass (or PGPASSFILE) readable by group or others earns a warning naming the chmod; 0600 none', () => {
    const pass = path.join(dir, '.pgpass');
    fs.writeFileSync(pass, 'h:5432:*:u:secret\n', { mode: 0o644 });
    fs.chmodSync(pass, 0o644);
    expect(parsePostgresUrl('postgresql://u@h/p', { env: { HOME: dir } }).warnings.join('\n')).toContain(`chmod 0600 ${pass}`);
    const other = path.join(dir, 'other-pass');
    fs.writeFileSync(other, 'h:5432:*:u:secret\n');
    fs.chmodSync(other, 0o640);
    expect(parsePostgresUrl('postgresql://u@h/p', { env: { HOME: dir, PGPASSFILE: other } }).warnings.join('\n')).toContain(`${other} is readable by group or others`);
    fs.chmodSync(pass, 0o600);
    expect(parsePostgresUrl('postgresql://u@h/p', { env: { HOME: dir } }).warnings).toEqual([]);
  });

  it('a password in the URL is used, never shown, and earns a warning', () => {
    const s = parsePostgresUrl('postgresql://u:s3cret-pw@h/p', { env: { HOME: dir } });
    expect(s.password).toBe('s3cret-pw');
    expect(s.display).not.toContain('s3cret-pw');
    expect(s.warnings.join('\n')).toMatch(/holds a password/);
  });
});
