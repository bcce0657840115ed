/**
 * A real PostgreSQL server (the Debian `postgresql` package) for tests: initdb + pg_ctl into a temp
 * directory, on a free port on 127.0.0.1 and a private socket directory, run as the `postgres` user (the
 * server refuses root). `startPostgres()` resolves once it accepts connections; `stop()` stops it and
 * removes the directory.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { needs } from './optional.js';

const VERSIONS = ['17', '16', '15'];
export const PG_BIN = VERSIONS.map((v) => `/usr/lib/postgresql/${v}/bin`).find((d) => fs.existsSync(path.join(d, 'initdb'))) ?? '/usr/lib/postgresql/15/bin';

/** `pgNeed.describe(...)`: skipped by name without the Debian package (CI unset), mandatory under CI. */
export const pgNeed = needs(path.join(PG_BIN, 'initdb'), 'postgresql');

export interface PgServer {
  port: number;
  dir: string;
  socketDir: string;
  bin: string;
  /** postgresql://postgres@127.0.0.1:PORT/DB */
  url(db?: string, user?: string): string;
  /** runs SQL with psql as the superuser, returns trimmed unaligned output */
  psql(sql: string, db?: string): string;
  stop(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const asPostgres = (args: string[]) => (process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', ...args]] : [args[0], args.slice(1)]) as [string, string[]];

export async function startPostgres(opts: { auth?: 'trust' | 'scram-sha-256'; password?: string } = {}): Promise<PgServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-pg-'));
  fs.chmodSync(dir, 0o755);
  const data = path.join(dir, 'data');
  const socketDir = path.join(dir, 'sock');
  fs.mkdirSync(data, { mode: 0o700 });
  fs.mkdirSync(socketDir, { mode: 0o755 });
  if (process.getuid?.() === 0) execFileSync('chown', ['postgres:postgres', data, socketDir]);
  const pwFile = path.join(dir, 'pw');
  const initArgs = [path.join(PG_BIN, 'initdb'), '-D', data, '-U', 'postgres', '-A', opts.auth ?? 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'];
  if (opts.password) {
    fs.writeFileSync(pwFile, opts.password, { mode: 0o644 });
    initArgs.push(`--pwfile=${pwFile}`);
  }
  const [c1, a1] = asPostgres(initArgs);
  execFileSync(c1, a1, { stdio: 'pipe' });
  fs.rmSync(pwFile, { force: true });
  const port = await freePort();
  const [c2, a2] = asPostgres([
    path.join(PG_BIN, 'pg_ctl'),
    '-D',
    data,
    '-w',
    '-l',
    path.join(socketDir, 'log'),
    '-o',
    `-p ${port} -k ${socketDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40`,
    'start',
  ]);
  execFileSync(c2, a2, { stdio: 'pipe' });
  const env = { ...process.env, PGPASSWORD: opts.password ?? '' };
  const server: PgServer = {
    port,
    dir,
    socketDir,
    bin: PG_BIN,
    url: (db = 'postgres', user = 'postgres') => `postgresql://${user}@127.0.0.1:${port}/${db}`,
    psql: (sql, db = 'postgres') =>
      execFileSync(path.join(PG_BIN, 'psql'), ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql], {
        env,
        encoding: 'utf8',
      }).trim(),
    stop: () => {
      const [c3, a3] = asPostgres([path.join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop']);
      spawnSync(c3, a3, { stdio: 'pipe' });
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}
