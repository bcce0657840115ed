/**
 * docs/postgresql.md: the example of the Dart Cloud set-up (two databases and the roles) run literally
 * with bash against a real PostgreSQL server (test/helpers/postgres.ts): backed up, listed, verified,
 * drilled, restored beside and swapped in. The only changes: the port 5432 becomes the test server's,
 * /var/backups/dart-cloud a temporary directory. `vertex-backup` and the client tools are on PATH.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { BIN, REPO } from '../helpers/cli.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';
import { type PgServer, pgNeed, startPostgres } from '../helpers/postgres.js';

function example(): string {
  const text = fs.readFileSync(path.join(REPO, 'docs', 'postgresql.md'), 'utf8');
  const m = /## Example[^\n]*\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(text);
  if (!m) throw new Error('no sh block under "## Example" in docs/postgresql.md');
  return m[1];
}

pgNeed.describe('docs/postgresql.md example (real server)', () => {
  let pg: PgServer;
  let cwd: string;
  beforeAll(async () => {
    pg = await startPostgres();
    cwd = tempDir('vb-pgdoc-');
    // the application's state, as the Dart Cloud backend leaves it
    pg.psql('CREATE DATABASE dart_cloud');
    pg.psql('CREATE DATABASE functions_db');
    pg.psql("CREATE ROLE dart_app LOGIN PASSWORD 'app-secret'");
    pg.psql(
      `CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
       INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, 1234) g;
       CREATE TABLE projects (id serial PRIMARY KEY, owner int REFERENCES users(id), name text);
       INSERT INTO projects (owner, name) SELECT 1 + g % 1234, 'p' || g FROM generate_series(1, 300) g;`,
      'dart_cloud',
    );
    pg.psql(
      `CREATE TABLE functions (id int PRIMARY KEY, code bytea);
       INSERT INTO functions SELECT g, convert_to(repeat('main() {} ', 20), 'UTF8') FROM generate_series(1, 200) g;`,
      'functions_db',
    );
  }, 120_000);
  afterAll(() => {
    pg?.stop();
    rmrf(cwd);
  });

  pgNeed.it('runs as written: both databases and the roles backed up, verified, drilled, restored beside and swapped in', () => {
    const bin = path.join(cwd, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'vertex-backup'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 });
    const backupDir = path.join(cwd, 'backups');
    const script = path.join(cwd, 'example.sh');
    const body = example().replaceAll('127.0.0.1:5432', `127.0.0.1:${pg.port}`).replaceAll('/var/backups/dart-cloud', backupDir);
    expect(body).not.toContain('5432');
    fs.writeFileSync(script, `set -e\n${body}`);
    const r = spawnSync('bash', [script], {
      cwd,
      encoding: 'utf8',
      timeout: 240_000,
      env: { PATH: `${bin}:${pg.bin}:${process.env.PATH}`, HOME: cwd, LANG: 'C.UTF-8', TZ: 'UTC' },
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/database backup \S+ ok/);
    expect(r.stdout).toContain('.dart_cloud.dump');
    expect(r.stdout).toContain('.functions_db.dump');
    expect(r.stdout).toContain('.globals.sql');
    expect(r.stdout).toContain('dart_cloud functions_db');
    expect(r.stdout).toMatch(/drill of database backup \S+ \(local\): PASSED/);
    expect(r.stdout).toMatch(/database dart_cloud: restored in .*, 2 tables, 1534 rows, every count as recorded/);
    // the psql count of the copy beside the live database
    expect(r.stdout).toMatch(/^\s+1234\n/m);
    // the databases kept by the swap
    expect(r.stdout).toMatch(/^dart_cloud_pre_restore_\d{8}_\d{6}$/m);
    expect(r.stdout).toMatch(/^functions_db_pre_restore_\d{8}_\d{6}$/m);
    expect(r.stdout).toMatch(/DROP DATABASE "dart_cloud_pre_restore_\d{8}_\d{6}"/);
    expect(Number(pg.psql('SELECT count(*) FROM users', 'dart_cloud'))).toBe(1234);
    expect(Number(pg.psql('SELECT count(*) FROM functions', 'functions_db'))).toBe(200);
    // the globals were written beside the dumps, with the application's role in them
    const globals = fs.readdirSync(path.join(backupDir, 'database')).find((f) => f.endsWith('.globals.sql'))!;
    expect(fs.readFileSync(path.join(backupDir, 'database', globals), 'utf8')).toContain('CREATE ROLE dart_app');
  });
});
