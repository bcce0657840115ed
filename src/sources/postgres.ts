/**
 * PostgreSQL databases as a source kind (see sources/source.ts). The client tools do the work:
 * `pg_dump --format=custom` of each database streamed straight into the backup file (through the age
 * writer when encrypting), under a snapshot exported by a psql session that counts every table's rows
 * in that same snapshot; `pg_dumpall --globals-only` beside them; `pg_restore --list` to verify;
 * `pg_restore --jobs` into a new database, checked, then swapped in by renames, to restore.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { PartWriter } from '../archive/parts.js';
import { AGE_EXTENSION, encryptStage } from '../crypto/age-artifact.js';
import { BackupError } from '../errors.js';
import { redact } from '../secrets.js';
import { libpqEnv, type PostgresSettings } from '../postgres-settings.js';
import type { ComponentRecord, DrillProof, RestoreOutcome, RestoreRequest, SnapshotContext, Source, SourceKind, StagedComponent } from './source.js';

export const POSTGRES = 'postgres';
const ADMIN_DB = 'postgres';

// ---- running the client tools ---------------------------------------------------------------

/** The command line of a client tool: from PG_BIN_DIR, PATH, or inside PG_DUMP_CONTAINER. */
function command(s: PostgresSettings, tool: string, args: string[]): [string, string[]] {
  if (s.container) {
    // -e NAME without a value: docker copies it from our environment, so the password is never an argument
    const pass = ['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGDATABASE', 'PGCONNECT_TIMEOUT', 'PGAPPNAME'].flatMap((k) => ['-e', k]);
    return ['docker', ['exec', '-i', ...pass, s.container, tool, ...args]];
  }
  return [s.binDir ? path.join(s.binDir, tool) : tool, args];
}

function startTool(s: PostgresSettings, tool: string, args: string[], database: string, stdin: 'pipe' | 'ignore' = 'ignore'): ChildProcess {
  const [cmd, argv] = command(s, tool, args);
  const env = libpqEnv(s, database);
  if (s.container) for (const k of ['PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD']) if (env[k] === undefined) env[k] = '';
  return spawn(cmd, argv, { env, stdio: [stdin, 'pipe', 'pipe'] });
}

interface ToolExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  spawnError?: NodeJS.ErrnoException;
}

/** Resolves when the process has exited and its pipes closed, with the end of its stderr. */
function exitOf(child: ChildProcess): Promise<ToolExit> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8192);
  });
  return new Promise((resolve) => {
    let spawnError: NodeJS.ErrnoException | undefined;
    child.on('error', (err) => {
      spawnError = err as NodeJS.ErrnoException;
      resolve({ code: null, signal: null, stderr, spawnError });
    });
    child.on('close', (code, signal) => resolve({ code, signal, stderr, spawnError }));
  });
}

/** The one line to show for a failed tool, with the exit code a user needs for it. */
function toolError(s: PostgresSettings, tool: string, what: string, r: ToolExit): BackupError {
  if (s.container && r.spawnError?.code === 'ENOENT')
    return new BackupError('USAGE', `docker not found on PATH: PG_DUMP_CONTAINER=${s.container} runs the PostgreSQL client inside that container`, {
      hint: 'install docker, or unset PG_DUMP_CONTAINER and install the PostgreSQL client here',
    });
  if (s.container && /No such container|is not running|executable file not found/i.test(r.stderr)) {
    const missing = /executable file not found/i.test(r.stderr);
    return new BackupError('USAGE', missing ? `${tool} not found in container ${s.container}` : `container ${s.container} (PG_DUMP_CONTAINER) is not running`, {
      hint: missing ? 'PG_DUMP_CONTAINER must name the database container (its image has the PostgreSQL client)' : 'start it, or check the name with docker ps',
    });
  }
  if (r.spawnError?.code === 'ENOENT') {
    return new BackupError('USAGE', `${tool} not found${s.binDir ? ` in ${s.binDir}` : s.container ? ` in container ${s.container}` : ' on PATH'}`, {
      hint: 'install the PostgreSQL client (apt-get install postgresql-client), or set PG_BIN_DIR to the directory holding it',
    });
  }
  const lines = r.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const first = lines.find((l) => /FATAL|error:/i.test(l));
  // "Dumping the contents of table … failed: PQgetResult() failed." says little; the server's FATAL
  // on a detail line below it says why (the session was ended, the server shut down)
  const fatal = lines.find((l) => l !== first && /detail: .*FATAL/.test(l))?.replace(/^.*?(FATAL)/, '$1');
  const line = redact(
    `${first ?? lines[lines.length - 1] ?? (r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`)}${fatal ? ` (${fatal})` : ''}`,
  ).replace(/^(pg_dump|pg_dumpall|pg_restore|psql): (error: )?/, '');
  const where = `${s.display}`;
  if (/password authentication failed|no password supplied|authentication failed/i.test(line))
    return new BackupError('USAGE', `${what}: ${line} (${where})`, { hint: 'put the password in ~/.pgpass (or PGPASSFILE, mode 0600) or PGPASSWORD' });
  if (/database ".*" does not exist/i.test(line))
    return new BackupError('USAGE', `${what}: ${line} (${where})`, { hint: 'check PG_DATABASES / the database name in DATABASE_URL' });
  if (/permission denied/i.test(line))
    return new BackupError('FAILED', `${what}: ${line} (${where})`, {
      hint: 'pg_dump reads every table: connect as the owner of the database or a superuser, or GRANT SELECT on its tables',
    });
  if (/role ".*" does not exist/i.test(line)) return new BackupError('USAGE', `${what}: ${line} (${where})`, { hint: 'check the user in DATABASE_URL' });
  if (/could not connect|connection refused|could not translate host|timeout expired|No such file or directory/i.test(line))
    return new BackupError('FAILED', `${what}: cannot reach the PostgreSQL server: ${line} (${where})`, {
      hint: 'check the host and port in DATABASE_URL and that the server is running',
    });
  const how = r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  return new BackupError('FAILED', `${what}: ${tool} failed (${how}): ${line}`);
}

/** Runs a tool to the end and returns its stdout; throws a BackupError when it fails. */
async function runTool(s: PostgresSettings, tool: string, args: string[], database: string, what: string, input?: string): Promise<string> {
  const child = startTool(s, tool, args, database, input ? 'pipe' : 'ignore');
  if (input) {
    // a tool that stops reading early (a damaged dump) closes the pipe: its exit code says what happened
    child.stdin?.on('error', () => {});
    pipeline(fs.createReadStream(input), child.stdin!).catch(() => {});
  }
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const r = await exitOf(child);
  if (r.code !== 0) throw toolError(s, tool, what, r);
  return out;
}

/**
 * How a tool reads a stored file: by its path here, or on stdin when it runs inside PG_DUMP_CONTAINER
 * (which cannot see this host's files). A pipe is not seekable, so there `pg_restore` runs without --jobs.
 */
function fileInput(s: PostgresSettings, file: string): { args: string[]; input?: string } {
  return s.container ? { args: [], input: file } : { args: [file] };
}

const PSQL_ARGS = ['-X', '-A', '-t', '-q', '-w', '-v', 'ON_ERROR_STOP=1'];
const psql = (s: PostgresSettings, db: string, sql: string, what: string) => runTool(s, 'psql', [...PSQL_ARGS, '-c', sql], db, what);

export const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (v: string) => `'${v.replace(/'/g, "''")}'`;

/** Every table with its rows, as JSON lines, through psql's \gexec (in whatever snapshot the session has). */
const COUNT_ROWS = String.raw`SELECT format('SELECT json_build_object(''t'', %L, ''n'', count(*)) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  ORDER BY 1 \gexec`;

function parseCounts(text: string): Record<string, number> {
  const tables: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    const { t, n } = JSON.parse(line) as { t: string; n: number };
    tables[t] = Number(n);
  }
  return tables;
}

export async function countRows(s: PostgresSettings, db: string): Promise<Record<string, number>> {
  return parseCounts(await psqlScript(s, COUNT_ROWS, `counting rows of ${db}`, db));
}

/** `pg_dump (PostgreSQL) 15.10 (Debian …)` → 15; server_version_num 150010 → 15. */
export const majorOf = (versionNum: number) => (versionNum >= 100000 ? Math.floor(versionNum / 10000) : Math.floor(versionNum / 100) / 100);

async function clientVersion(s: PostgresSettings, tool: string): Promise<{ text: string; major: number }> {
  const text = (await runTool(s, tool, ['--version'], s.database, `${tool} --version`)).trim();
  const m = /(\d+)(?:\.(\d+))?/.exec(text.replace(/^[^)]*\)/, ''));
  if (!m) throw new BackupError('FAILED', `cannot read the version of ${tool}: ${JSON.stringify(text.slice(0, 80))}`);
  return { text, major: Number(m[1]) };
}

export interface ServerFacts {
  version: string;
  versionNum: number;
  databases: string[];
  superuser: boolean;
  pgDump: string;
}

/**
 * What the server and the client say, found before anything is written: reachable, the databases that
 * exist, and a pg_dump at least as new as the server (pg_dump refuses a newer server only after it
 * started; we say which package fixes it first).
 */
export async function probeServer(s: PostgresSettings): Promise<ServerFacts> {
  const out = await psql(
    s,
    s.database,
    "SELECT current_setting('server_version_num') || '|' || current_setting('server_version') || '|' || (SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user) UNION ALL SELECT '=' || datname FROM pg_database WHERE NOT datistemplate AND datallowconn",
    `connecting to PostgreSQL`,
  );
  const lines = out.split('\n').filter(Boolean);
  const [num, version, superuser] = lines[0].split('|');
  const facts = {
    versionNum: Number(num),
    version,
    superuser: superuser === 'true',
    databases: lines.filter((l) => l.startsWith('=')).map((l) => l.slice(1)),
  };
  const dump = await clientVersion(s, 'pg_dump');
  const serverMajor = Math.floor(facts.versionNum / 10000);
  if (dump.major < serverMajor) {
    throw new BackupError('USAGE', `pg_dump ${dump.major} is older than the PostgreSQL ${serverMajor} server at ${s.display}: it cannot dump it`, {
      hint: `install postgresql-client-${serverMajor} (apt-get install postgresql-client-${serverMajor}) or set PG_BIN_DIR to /usr/lib/postgresql/${serverMajor}/bin`,
    });
  }
  return { ...facts, pgDump: dump.text };
}

/** The databases a backup covers: the list configured, `all` resolved, each one checked to exist. */
export function databasesOf(s: PostgresSettings, facts: ServerFacts): string[] {
  if (s.databases === 'all') return facts.databases.filter((d) => d !== 'postgres').sort();
  for (const d of s.databases) {
    if (!facts.databases.includes(d))
      throw new BackupError('USAGE', `database "${d}" does not exist on ${s.display}`, { hint: `existing databases: ${facts.databases.join(', ')}` });
  }
  return s.databases;
}

// ---- snapshot -------------------------------------------------------------------------------

/** A file-name-safe form of a database name: `db_backup_<id>.<safe>.dump`. */
export const fileSafe = (name: string) => name.replace(/[^A-Za-z0-9_-]/g, '_');

/** A psql session that holds a REPEATABLE READ transaction open and exports its snapshot. */
class SnapshotSession {
  private out = '';
  private waiters: (() => void)[] = [];
  private readonly exited: Promise<ToolExit>;
  private constructor(
    private readonly s: PostgresSettings,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => {
      this.out += d.toString();
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = exitOf(child);
    this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  static async open(s: PostgresSettings, db: string): Promise<{ session: SnapshotSession; snapshot: string }> {
    const session = new SnapshotSession(s, startTool(s, 'psql', PSQL_ARGS, db, 'pipe'));
    session.child.stdin?.on('error', () => {});
    session.child.stdin?.write("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n\\echo '--snapshot--'\n");
    const text = await session.until('--snapshot--', `opening a snapshot of ${db}`);
    return { session, snapshot: text.trim().split('\n')[0] };
  }

  private async until(marker: string, what: string): Promise<string> {
    let done = false;
    this.exited.then(() => {
      done = true;
    });
    while (!this.out.includes(`${marker}\n`)) {
      if (done) throw toolError(this.s, 'psql', what, await this.exited);
      await new Promise<void>((r) => this.waiters.push(r));
    }
    const i = this.out.indexOf(`${marker}\n`);
    const text = this.out.slice(0, i);
    this.out = this.out.slice(i + marker.length + 1);
    return text;
  }

  async counts(db: string): Promise<Record<string, number>> {
    this.child.stdin?.write(`${COUNT_ROWS}\n\\echo '--counted--'\n`);
    return parseCounts(await this.until('--counted--', `counting rows of ${db}`));
  }

  async close(): Promise<void> {
    this.child.stdin?.end('COMMIT;\n');
    await this.exited;
  }

  kill(): void {
    this.child.kill('SIGTERM');
  }
}

/** One database: `db_backup_<id>.<db>.dump`, pg_dump's custom format, under an exported snapshot. */
export class PostgresDatabase implements Source {
  readonly kind = POSTGRES;
  constructor(
    private readonly s: PostgresSettings,
    readonly name: string,
    private readonly facts: () => Promise<ServerFacts>,
  ) {}

  async check(): Promise<void> {
    const facts = await this.facts();
    if (!facts.databases.includes(this.name)) throw new BackupError('USAGE', `database "${this.name}" does not exist on ${this.s.display}`);
  }

  async snapshot(ctx: SnapshotContext): Promise<ComponentRecord[]> {
    const facts = await this.facts();
    const file = `${ctx.base}.${fileSafe(this.name)}.dump${ctx.recipients ? AGE_EXTENSION : ''}`;
    const writer = new PartWriter(ctx.dir, file, undefined, ctx.onProgress);
    let session: SnapshotSession | undefined;
    let dump: ChildProcess | undefined;
    try {
      const opened = await SnapshotSession.open(this.s, this.name);
      session = opened.session;
      dump = startTool(this.s, 'pg_dump', ['--format=custom', '--no-password', `--snapshot=${opened.snapshot}`], this.name);
      const exited = exitOf(dump);
      const counting = session.counts(this.name);
      // awaited only once pg_dump is done: a count that fails first (no SELECT on a table) must not be left unhandled
      counting.catch(() => {});
      const enc = ctx.recipients ? await encryptStage(ctx.recipients) : undefined;
      const streamed = enc ? pipeline(dump.stdout!, enc.stream, writer, { signal: ctx.signal }) : pipeline(dump.stdout!, writer, { signal: ctx.signal });
      const [r] = await Promise.all([exited, streamed.catch((err) => Promise.reject(err))]);
      // a dump that did not end with exit 0 is never a backup, whatever reached the file
      if (r.code !== 0) {
        // a count that failed (no SELECT on a table) ends the session and with it the exported snapshot:
        // pg_dump then only says "invalid snapshot identifier", the count's error says why
        const countError = await counting.then(
          () => undefined,
          (err: unknown) => err,
        );
        throw countError ?? toolError(this.s, 'pg_dump', `dumping database ${this.name}`, r);
      }
      const tables = await counting;
      await session.close();
      session = undefined;
      const art = await writer.commit();
      return [
        {
          kind: POSTGRES,
          name: this.name,
          role: 'data',
          file,
          size: art.size,
          checksum: art.checksum,
          encryption: enc?.info(),
          info: { format: 'custom', server_version: facts.version, pg_dump_version: facts.pgDump, tables },
        },
      ];
    } catch (err) {
      dump?.kill('SIGTERM');
      session?.kill();
      await writer.abort();
      throw err;
    }
  }
}

/** Roles and tablespaces: `db_backup_<id>.globals.sql` (0600: it holds password hashes). */
export class PostgresGlobals implements Source {
  readonly kind = POSTGRES;
  readonly name = 'globals';
  constructor(
    private readonly s: PostgresSettings,
    private readonly facts: () => Promise<ServerFacts>,
  ) {}

  async check(): Promise<void> {
    await this.facts();
  }

  async snapshot(ctx: SnapshotContext): Promise<ComponentRecord[]> {
    const facts = await this.facts();
    const file = `${ctx.base}.globals.sql${ctx.recipients ? AGE_EXTENSION : ''}`;
    const writer = new PartWriter(ctx.dir, file);
    // without superuser pg_authid cannot be read: the roles are dumped without their passwords
    const args = ['--globals-only', '--no-password', ...(facts.superuser ? [] : ['--no-role-passwords'])];
    const tool = startTool(this.s, 'pg_dumpall', args, this.s.database);
    try {
      const exited = exitOf(tool);
      const enc = ctx.recipients ? await encryptStage(ctx.recipients) : undefined;
      const streamed = enc ? pipeline(tool.stdout!, enc.stream, writer, { signal: ctx.signal }) : pipeline(tool.stdout!, writer, { signal: ctx.signal });
      const [r] = await Promise.all([exited, streamed]);
      if (r.code !== 0) throw toolError(this.s, 'pg_dumpall', 'dumping roles and tablespaces', r);
      const art = await writer.commit();
      return [
        {
          kind: POSTGRES,
          name: 'globals',
          role: 'globals',
          file,
          size: art.size,
          checksum: art.checksum,
          encryption: enc?.info(),
          info: { server_version: facts.version, role_passwords: facts.superuser },
        },
      ];
    } catch (err) {
      tool.kill('SIGTERM');
      await writer.abort();
      throw err;
    }
  }
}

/** The sources of a PostgreSQL configuration: each database, then the globals. */
export function postgresSources(s: PostgresSettings): { sources: () => Promise<Source[]>; facts: () => Promise<ServerFacts> } {
  let probed: Promise<ServerFacts> | undefined;
  const facts = () => {
    probed ??= probeServer(s);
    return probed;
  };
  return {
    facts,
    sources: async () => [...databasesOf(s, await facts()).map((d) => new PostgresDatabase(s, d, facts)), new PostgresGlobals(s, facts)],
  };
}

// ---- verify, drill, restore -------------------------------------------------------------------

const recordedTables = (r: ComponentRecord) => (r.info?.tables ?? undefined) as Record<string, number> | undefined;

function compareTables(expected: Record<string, number> | undefined, got: Record<string, number>): { problems: string[]; tables: number; rows: number } {
  const problems: string[] = [];
  let rows = 0;
  for (const [t, n] of Object.entries(expected ?? {})) {
    if (!(t in got)) problems.push(`table ${t} is missing from the restored database`);
    else if (got[t] !== n) problems.push(`table ${t} holds ${got[t]} rows, ${n} were recorded at backup time`);
    rows += n;
  }
  return { problems, tables: Object.keys(got).length, rows };
}

const databaseExists = async (s: PostgresSettings, name: string) =>
  (await psql(s, ADMIN_DB, `SELECT 1 FROM pg_database WHERE datname = ${quoteLiteral(name)}`, `looking up database ${name}`)).trim() === '1';

/**
 * Creates the empty database a restore or drill writes into. An existing one is never dropped to make
 * room: `--target-db` naming the live database (or any other) would otherwise destroy it.
 */
async function createDatabase(s: PostgresSettings, name: string, what = 'the database to restore into', mark?: string): Promise<void> {
  if (Buffer.byteLength(name) > 63) throw new BackupError('USAGE', `database name ${name} is longer than PostgreSQL's 63 bytes`);
  // CREATE DATABASE itself refuses an existing name: one round trip, and no window between a look and the
  // create. The mark goes in the same psql session, which has the whole script: a kill of this process
  // between the two statements does not stop it
  const sql = `CREATE DATABASE ${quoteIdent(name)};${mark ? `\nCOMMENT ON DATABASE ${quoteIdent(name)} IS ${quoteLiteral(mark)};` : ''}`;
  await psqlScript(s, sql, `creating database ${name}`).catch((err: Error) => {
    if (!/already exists/.test(err.message)) throw err;
    throw new BackupError('USAGE', `${what}, ${name}, exists already on ${s.display}: nothing was changed`, {
      hint: 'name a database that does not exist as the target, or drop it first if it is a leftover',
      remedy: 'target-db-new',
    });
  });
}

const dropDatabase = (s: PostgresSettings, name: string) => psql(s, ADMIN_DB, `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`, `dropping ${name}`);

/** `pg_restore --jobs 2` of a dump into the (empty) database `into`; any error fails it. */
async function pgRestoreInto(s: PostgresSettings, file: string, into: string): Promise<void> {
  const f = fileInput(s, file);
  const jobs = f.input ? [] : ['--jobs=2'];
  await runTool(s, 'pg_restore', ['--no-password', ...jobs, '--exit-on-error', '--dbname', into, ...f.args], into, `restoring into ${into}`, f.input).catch(
    async () =>
      // --jobs does not honour --exit-on-error for every step: one serial pass says what failed
      runTool(
        s,
        'pg_restore',
        ['--no-password', '--exit-on-error', '--clean', '--if-exists', '--dbname', into, ...f.args],
        into,
        `restoring into ${into}`,
        f.input,
      ),
  );
}

export class PostgresKind implements SourceKind {
  readonly kind = POSTGRES;
  constructor(private readonly s: PostgresSettings) {}

  async verify(c: StagedComponent): Promise<string[]> {
    if (c.record.role === 'globals') return [];
    try {
      // the table of contents: a foreign file fails here, and it names the tables whose data is inside
      const f = fileInput(this.s, c.file);
      // the table of contents: a foreign file fails here, and it names the tables whose data is inside.
      // --list reads only that: a dump truncated after it (its checksum rewritten to match) still lists,
      // so beside it the whole script is written to nowhere, which reads and inflates every data block.
      const [list] = await Promise.all([
        runTool(this.s, 'pg_restore', ['--list', ...f.args], this.s.database, `reading ${c.record.file}`, f.input),
        runTool(this.s, 'pg_restore', ['--file=/dev/null', ...f.args], this.s.database, `reading ${c.record.file}`, f.input),
      ]);
      const expected = Object.keys(recordedTables(c.record) ?? {});
      const problems: string[] = [];
      for (const t of expected) {
        const [schema, table] = [t.slice(0, t.indexOf('.')), t.slice(t.indexOf('.') + 1)];
        if (!list.includes(` TABLE DATA ${schema} ${table} `)) problems.push(`dump of ${c.record.name} has no data for table ${t}`);
      }
      return problems;
    } catch (err) {
      return [`dump of ${c.record.name} cannot be read by pg_restore: ${(err as Error).message}`];
    }
  }

  async drill(c: StagedComponent, scratchId: string): Promise<DrillProof> {
    const scratch = `vertex_drill_${scratchId}`.slice(0, 63);
    const started = Date.now();
    let created = false;
    try {
      await createDatabase(this.s, scratch, 'the scratch database of the drill');
      created = true;
      await pgRestoreInto(this.s, c.file, scratch);
      const restoreMs = Date.now() - started;
      const got = await countRows(this.s, scratch);
      const cmp = compareTables(recordedTables(c.record), got);
      return { name: c.record.name, ok: cmp.problems.length === 0, problems: cmp.problems, tables: cmp.tables, rows: cmp.rows, restoreMs };
    } catch (err) {
      return { name: c.record.name, ok: false, problems: [(err as Error).message], restoreMs: Date.now() - started };
    } finally {
      if (created) await dropDatabase(this.s, scratch).catch(() => {});
    }
  }

  /**
   * Never drops the live database: restores into `<db>_restore_<id>`, checks its tables and rows, then
   * (unless restoring beside under `target`) swaps names in one short step, keeping the old one as
   * `<db>_pre_restore_<id>`. A failure before the swap drops only the new database.
   */
  async restore(components: StagedComponent[], req: RestoreRequest): Promise<RestoreOutcome> {
    const data = components.find((c) => c.record.role === 'data');
    const notes: string[] = [];
    if (req.withAuxiliary) {
      for (const g of components.filter((c) => c.record.role === 'globals')) {
        // roles that exist already are reported by psql and left as they are
        const f = fileInput(this.s, g.file);
        await runTool(this.s, 'psql', ['-X', '-q', '-w', ...(f.input ? [] : ['-f', g.file])], ADMIN_DB, 'restoring roles and tablespaces', f.input).then(
          () => notes.push('roles and tablespaces restored (existing ones kept)'),
          (err) => notes.push(`globals: ${(err as Error).message}`),
        );
      }
    }
    if (!data) return { name: 'globals', restoredAs: 'globals', notes };
    const live = data.record.name;
    const staging = req.target ?? `${live}_restore_${req.id}`;
    const keptAs = `${live}_pre_restore_${req.id}`;
    const mark = restoreMark(req.id);
    const journal = (step: 'staging' | 'swap') => req.record?.({ step, live, staging, keptAs, beside: !!req.target });
    req.onStep?.(`restoring ${live} into ${staging}`);
    let created = false;
    try {
      await journal('staging');
      // the mark lets the next command drop this database if we die before the swap, and nothing else
      await createDatabase(this.s, staging, undefined, mark);
      created = true;
      req.checkpoint?.('postgres-restoring');
      await pgRestoreInto(this.s, data.file, staging);
      const cmp = compareTables(recordedTables(data.record), await countRows(this.s, staging));
      if (cmp.problems.length) throw new BackupError('FAILED', `the restored copy of ${live} does not match the backup: ${cmp.problems.join('; ')}`);
      await req.beforeSwap?.();
      req.checkpoint?.('postgres-restored');
    } catch (err) {
      // only what this run created goes: a half-restored copy is no use to anyone
      if (created) await dropDatabase(this.s, staging).catch(() => {});
      await req.record?.(undefined).catch(() => {});
      const e = err instanceof BackupError ? err : new BackupError('FAILED', (err as Error).message);
      throw new BackupError(e.code, `${e.message}; the live database ${live} was not touched`, { hint: e.hint, remedy: e.remedy, cause: err });
    }
    if (req.target) {
      await psql(this.s, ADMIN_DB, `COMMENT ON DATABASE ${quoteIdent(staging)} IS NULL`, `unmarking ${staging}`);
      await req.record?.(undefined);
      return { name: live, restoredAs: staging, notes };
    }
    req.onStep?.(`swapping ${staging} in as ${live}`);
    const exists = await databaseExists(this.s, live);
    await journal('swap');
    try {
      if (exists) {
        // no new sessions, the open ones ended: RENAME refuses a database anyone is connected to
        await psqlScript(this.s, `ALTER DATABASE ${quoteIdent(live)} ALLOW_CONNECTIONS false;`, `closing ${live} to new connections`);
        req.checkpoint?.('postgres-closed');
        await psqlScript(this.s, terminateSessions(live), `ending the sessions of ${live}`);
      }
      // both renames in one transaction: there is never a moment without a database called `live`
      await psqlScript(
        this.s,
        `BEGIN;
         ${exists ? `ALTER DATABASE ${quoteIdent(live)} RENAME TO ${quoteIdent(keptAs)};` : ''}
         ALTER DATABASE ${quoteIdent(staging)} RENAME TO ${quoteIdent(live)};
         COMMENT ON DATABASE ${quoteIdent(live)} IS NULL;
         COMMIT;`,
        `swapping in ${live}`,
      );
    } catch (err) {
      // the renames did not happen: the live database takes connections again, the copy stays for a look
      if (exists) await psqlScript(this.s, `ALTER DATABASE ${quoteIdent(live)} ALLOW_CONNECTIONS true;`, `reopening ${live}`).catch(() => {});
      await psql(this.s, ADMIN_DB, `COMMENT ON DATABASE ${quoteIdent(staging)} IS NULL`, `unmarking ${staging}`).catch(() => {});
      await req.record?.(undefined).catch(() => {});
      throw new BackupError(
        'FAILED',
        `swapping the restored copy in as ${live} failed: ${(err as Error).message}; ${live} is as it was, the copy is ${staging}`,
      );
    }
    req.checkpoint?.('postgres-swapped');
    if (exists) await psqlScript(this.s, `ALTER DATABASE ${quoteIdent(keptAs)} ALLOW_CONNECTIONS true;`, `reopening ${keptAs}`);
    await req.record?.(undefined);
    if (exists) notes.push(`the previous ${live} is kept as ${keptAs}: drop it when done with: DROP DATABASE ${quoteIdent(keptAs)};`);
    return { name: live, restoredAs: live, keptAs: exists ? keptAs : undefined, notes };
  }

  /**
   * A restore killed after it recorded `state` (see restore above). Before the swap: the marked copy is
   * dropped, the live database was never touched. During the swap the renames are one transaction, so
   * either they happened (completed: the previous database, kept, takes connections again) or they did
   * not (rolled back: the live one takes connections again, the copy is dropped).
   */
  async recover(state: Record<string, unknown>, id: string): Promise<string> {
    const { step, live, staging, keptAs } = state as { step?: unknown; live?: unknown; staging?: unknown; keptAs?: unknown };
    const bad = (why: string) => new BackupError('FAILED', `the journal of an interrupted PostgreSQL restore is not one this tool writes: ${why}`);
    if (typeof live !== 'string' || !live || typeof staging !== 'string' || typeof keptAs !== 'string') throw bad('it names no database');
    if (step !== 'staging' && step !== 'swap') throw bad(`unknown step ${JSON.stringify(String(step).slice(0, 40))}`);
    if (keptAs !== `${live}_pre_restore_${id}`) throw bad(`${keptAs} is not the name a restore keeps ${live} under`);
    const where = this.s.display;
    // only a database carrying this run's mark is ever dropped: a journal cannot name another one. A
    // copy that exists unmarked may be the psql session of a killed run still between CREATE and COMMENT:
    // it is given a moment
    const lookUp = async () =>
      (
        await psql(
          this.s,
          ADMIN_DB,
          `SELECT CASE WHEN shobj_description(oid, 'pg_database') = ${quoteLiteral(restoreMark(id))} THEN '1' ELSE '0' END FROM pg_database WHERE datname = ${quoteLiteral(staging)}`,
          `looking up ${staging}`,
        )
      ).trim();
    let marked = await lookUp();
    for (let i = 0; marked === '0' && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 100));
      marked = await lookUp();
    }
    const dropCopy = async () => {
      if (marked === '1') await dropDatabase(this.s, staging);
    };
    if (step === 'staging') {
      await dropCopy();
      return `rolled back the restore of ${live} (run ${id}) that was interrupted before the swap: ${marked === '1' ? `dropped the half-restored ${staging}; ` : ''}${live} on ${where} was not touched`;
    }
    const liveExists = await databaseExists(this.s, live);
    if (marked === '1') {
      // the renames did not commit
      if (liveExists) await psqlScript(this.s, `ALTER DATABASE ${quoteIdent(live)} ALLOW_CONNECTIONS true;`, `reopening ${live}`);
      await dropCopy();
      return `rolled back the restore of ${live} (run ${id}) that was interrupted just before the swap: ${live} on ${where} is as it was and takes connections again; run the restore again`;
    }
    const kept = await databaseExists(this.s, keptAs);
    if (kept) await psqlScript(this.s, `ALTER DATABASE ${quoteIdent(keptAs)} ALLOW_CONNECTIONS true;`, `reopening ${keptAs}`);
    return `completed the restore of ${live} (run ${id}) that was interrupted after the swap: ${live} on ${where} holds the backup's copy${kept ? `, the previous one is kept as ${keptAs} (DROP DATABASE ${quoteIdent(keptAs)}; when done)` : ''}`;
  }
}

/** The comment a database being restored into carries until it is swapped in (or kept beside). */
const restoreMark = (id: string) => `vertex-backup: restore ${id} in progress`;

/** Ends every other session of `db` and waits until they are gone (RENAME refuses a database in use). */
const terminateSessions = (db: string) => `DO $$ BEGIN
    FOR i IN 1..100 LOOP
      PERFORM pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ${quoteLiteral(db)} AND pid <> pg_backend_pid();
      EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = ${quoteLiteral(db)} AND pid <> pg_backend_pid());
      PERFORM pg_sleep(0.05);
    END LOOP;
  END $$;`;

async function psqlScript(s: PostgresSettings, sql: string, what: string, db = ADMIN_DB): Promise<string> {
  const child = startTool(s, 'psql', PSQL_ARGS, db, 'pipe');
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stdin?.on('error', () => {});
  child.stdin?.end(sql);
  const r = await exitOf(child);
  if (r.code !== 0) throw toolError(s, 'psql', what, r);
  return out;
}
