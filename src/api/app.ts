import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { getCookie } from 'hono/cookie';
import * as v from 'valibot';
import type { Config } from '../config.js';
import { CatalogCache } from '../catalog/catalog-cache.js';
import { acquireLock, type Lock } from '../catalog/lock.js';
import { BackupError, EXIT_SKIPPED, toBackupError } from '../errors.js';
import type { ProgressEvent } from '../ops/progress.js';
import { listDocument } from '../results/backups.js';
import { errorDocument, jsonLine, jsonText } from '../results/json.js';
import { type Job, type JobOutcome, Jobs } from './jobs.js';
import { allows, matchToken, readTokens, type Scope, type StoredToken } from './tokens.js';
import { loginPage, StatusPage } from './page.js';

export interface AppOptions {
  cfg: Config;
  /** the config file holding the token hashes (re-read when it changes) */
  configFile?: string;
  /** the age the newest backup of each type may have (status page, /healthz) */
  maxAgeMs: number;
  /** largest request body accepted */
  bodyLimitBytes?: number;
}

type Env = { Variables: { token: StoredToken; viaCookie: boolean } };

const TYPES = ['full', 'database', 'storage'] as const;
const HTTP_STATUS: Record<string, 400 | 409 | 422 | 500 | 507> = { USAGE: 400, LOCKED: 409, DAMAGED: 422, FAILED: 500, NO_SPACE: 507 };

/** JSON the way --json prints it: one serializer (results/json.ts). */
function send(c: Context, status: number, value: unknown): Response {
  return c.body(jsonText(value), status as 200, { 'content-type': 'application/json; charset=utf-8' });
}

function sendError(c: Context, err: unknown, field?: string): Response {
  const e = toBackupError(err);
  const doc = errorDocument(e, e.exitCode) as { error: Record<string, unknown> };
  if (field) doc.error.field = field;
  return send(c, HTTP_STATUS[e.code] ?? 500, doc);
}

const fail = (c: Context, status: number, code: string, message: string) => send(c, status, { ok: false, error: { code, message } });

/** Parses a body (or query) against a schema: a 400 naming the first wrong field. */
function parse<T extends v.GenericSchema>(schema: T, value: unknown): { ok: true; data: v.InferOutput<T> } | { ok: false; field: string; message: string } {
  const r = v.safeParse(schema, value);
  if (r.success) return { ok: true, data: r.output };
  const issue = r.issues[0];
  const field = issue.path?.length ? (v.getDotPath(issue) ?? '(body)') : '(body)';
  return { ok: false, field, message: `field '${field}' ${issue.message}` };
}

const CreateBody = v.strictObject(
  { type: v.optional(v.picklist([...TYPES, 'volumes'], 'must be one of full, database, storage, volumes'), 'full') },
  'must be a JSON object with only "type"',
);
const RestoreBody = v.strictObject(
  {
    backup_path: v.pipe(v.string('must be a string'), v.minLength(1, 'must not be empty'), v.maxLength(4096, 'is too long')),
    verify_checksum: v.optional(v.boolean('must be true or false'), true),
  },
  'must be a JSON object with "backup_path" and optionally "verify_checksum"',
);
const VerifyBody = v.strictObject(
  { backup: v.optional(v.string('must be a string')), all: v.optional(v.boolean('must be true or false')) },
  'must be a JSON object',
);
const DrillBody = v.strictObject({ type: v.optional(v.picklist(TYPES, 'must be one of full, database, storage')) }, 'must be a JSON object');

async function jsonBody(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new BackupError('USAGE', 'the request body is not valid JSON');
  }
}

/**
 * The backup_path of a restore request, confined to the backup directory (as `restore PATH` is to a backup
 * file): an id or "latest" as it is; a path relative to the working directory, to the backup directory or
 * to its parent (the seed's "backups/database/…") must resolve, symlinks followed, to a file inside it.
 */
export function confineBackupPath(backupDir: string, ref: string): string {
  if (ref === 'latest' || /^\d{8}_\d{6}(_\d+)?$/.test(ref)) return ref;
  if (ref.includes('\0')) throw new BackupError('USAGE', "field 'backup_path' holds a NUL byte");
  const root = fs.realpathSync(backupDir);
  const candidates = path.isAbsolute(ref) ? [ref] : [path.resolve(ref), path.resolve(backupDir, ref), path.resolve(path.dirname(backupDir), ref)];
  for (const c of candidates) {
    let real: string;
    try {
      real = fs.realpathSync(c);
    } catch {
      continue;
    }
    if (real.startsWith(root + path.sep) && fs.statSync(real).isFile()) return real;
  }
  throw new BackupError('USAGE', `field 'backup_path' must name a backup inside the backup directory, got '${ref}'`, {
    hint: 'give a backup id (GET /backups/list) or the path of a backup file in the backup directory',
  });
}

/** Failed authentications per client address: more than 10 in a minute and it waits. */
class FailureLimiter {
  private fails = new Map<string, number[]>();
  constructor(
    private limit = 10,
    private windowMs = 60_000,
  ) {}
  blocked(key: string, now = Date.now()): number {
    const list = (this.fails.get(key) ?? []).filter((t) => now - t < this.windowMs);
    this.fails.set(key, list);
    return list.length >= this.limit ? Math.ceil((list[0] + this.windowMs - now) / 1000) : 0;
  }
  fail(key: string, now = Date.now()): void {
    const list = this.fails.get(key) ?? [];
    list.push(now);
    this.fails.set(key, list);
    if (this.fails.size > 10_000) this.fails.delete(this.fails.keys().next().value as string);
  }
}

/** The route → scope table (also what the OpenAPI document and the docs say). */
const SCOPE_OF: [string, RegExp, Scope][] = [
  ['POST', /^\/backups\/(restore|rotate)$/, 'restore'],
  ['POST', /^\/(backups|jobs)\//, 'trigger'],
  ['DELETE', /^\/jobs\//, 'trigger'],
];

function scopeFor(method: string, pathname: string): Scope {
  for (const [m, re, s] of SCOPE_OF) if (m === method && re.test(pathname)) return s;
  return 'read';
}

export function buildApp(opts: AppOptions) {
  const { cfg } = opts;
  const jobs = new Jobs();
  const limiter = new FailureLimiter();
  let tokenCache: { mtimeMs: number; tokens: StoredToken[] } | undefined;
  const tokens = (): StoredToken[] => {
    if (!opts.configFile) return [];
    const mtimeMs = fs.statSync(opts.configFile, { throwIfNoEntry: false })?.mtimeMs ?? 0;
    if (!tokenCache || tokenCache.mtimeMs !== mtimeMs) tokenCache = { mtimeMs, tokens: readTokens(opts.configFile) };
    return tokenCache.tokens;
  };
  /** one listing of the backup directory shared by the read routes and the page (catalog-cache.ts) */
  const catalog = new CatalogCache(cfg.backupDir);
  const page = new StatusPage(cfg, opts.maxAgeMs, catalog);
  // registered before any event stream: a page reloaded on 'done' sees what the job wrote
  jobs.on('done', () => {
    catalog.invalidate();
    page.invalidate();
  });
  /** the list document of the latest snapshot, serialized once per snapshot and type */
  let listText: { generation: number; second: number; texts: Map<string, string> } | undefined;
  /** one run per backup directory: this process's own runs are refused here, other processes' by the kernel lock */
  let busy: { job?: Job; lock?: Lock } | undefined;

  const app = new Hono<Env>();

  app.onError((err, c) => sendError(c, err));
  app.notFound((c) => fail(c, 404, 'NOT_FOUND', `no route ${c.req.method} ${new URL(c.req.url).pathname}`));
  app.use('*', async (c, next) => {
    await next();
    c.header('x-content-type-options', 'nosniff');
    c.header('referrer-policy', 'no-referrer');
    c.header('cache-control', 'no-store');
  });
  const limitBody = bodyLimit({
    maxSize: opts.bodyLimitBytes ?? 64 * 1024,
    onError: (c) => {
      // the rest of the body is not read: the connection cannot carry another request
      c.header('connection', 'close');
      return fail(c, 413, 'TOO_LARGE', `the request body is larger than ${opts.bodyLimitBytes ?? 64 * 1024} bytes`);
    },
  });
  // not for GET and HEAD, which no route reads a body of: looking for one builds a whole Request per page view
  app.use('*', (c, next) => (c.req.method === 'GET' || c.req.method === 'HEAD' ? next() : limitBody(c, next)));

  // unauthenticated: uptime monitors
  app.get('/healthz', async (c) => {
    const { checkBackups, enabledTypes } = await import('../ops/check.js');
    const { entries } = await catalog.get();
    const r = await checkBackups({ backupDir: cfg.backupDir, maxAgeMs: opts.maxAgeMs, types: enabledTypes(cfg.env), includeOtherRuns: false, entries });
    const fresh = r.types.every((t) => t.ok);
    return c.text(
      fresh
        ? 'ok\n'
        : `stale: ${r.types
            .filter((t) => !t.ok)
            .map((t) => t.type)
            .join(', ')}\n`,
      fresh ? 200 : 503,
    );
  });

  // unauthenticated: the API's description holds no secret (not send(): its keys are camelCase by the spec)
  app.get('/openapi.json', async (c) => {
    const { openApiDocument } = await import('./openapi.js');
    return c.json(openApiDocument());
  });

  app.post('/login', async (c) => {
    // the status page's form: the token becomes the authToken cookie (HttpOnly, SameSite=Strict)
    const form = await c.req.parseBody();
    const token = typeof form.token === 'string' ? form.token : '';
    const ip = clientKey(c);
    if (limiter.blocked(ip)) return c.text('too many failed attempts, wait a minute\n', 429);
    if (!matchToken(tokens(), token).token) {
      limiter.fail(ip);
      return c.html(loginPage('that token is not valid'), 401);
    }
    const secure = new URL(c.req.url).protocol === 'https:' ? '; Secure' : '';
    c.header('set-cookie', `authToken=${token}; Path=/; HttpOnly; SameSite=Strict${secure}`);
    return c.redirect('/', 303);
  });

  // everything else needs a token: `Authorization: Bearer …` or the seed's `authToken` cookie
  app.use('*', async (c, next) => {
    const ip = clientKey(c);
    const url = new URL(c.req.url);
    const wait = limiter.blocked(ip);
    if (wait) {
      c.header('retry-after', String(wait));
      return fail(c, 429, 'RATE_LIMITED', 'too many failed authentication attempts from this address; wait and retry');
    }
    const header = c.req.header('authorization');
    const bearer = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    const cookie = bearer ? undefined : getCookie(c, 'authToken');
    const presented = bearer ?? cookie;
    const isPage = c.req.method === 'GET' && url.pathname === '/';
    if (!presented) {
      if (isPage) return c.html(loginPage(), 401);
      c.header('www-authenticate', 'Bearer');
      return fail(c, 401, 'UNAUTHENTICATED', 'a token is needed: Authorization: Bearer TOKEN or the authToken cookie');
    }
    const m = matchToken(tokens(), presented);
    if (!m.token) {
      limiter.fail(ip);
      if (isPage) return c.html(loginPage(m.expired ? 'your token has expired' : 'that token is not valid'), 401);
      c.header('www-authenticate', 'Bearer error="invalid_token"');
      return fail(c, 401, 'UNAUTHENTICATED', m.expired ? 'the token has expired' : 'the token is not valid');
    }
    const need = scopeFor(c.req.method, url.pathname);
    if (!allows(m.token.scope, need)) return fail(c, 403, 'FORBIDDEN', `this needs a '${need}' token; this one is '${m.token.scope}'`);
    // a cookie rides along on any request a browser makes: a state-changing one must come from this origin
    if (cookie && c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const site = c.req.header('sec-fetch-site');
      const origin = c.req.header('origin');
      const host = c.req.header('host');
      const crossSite =
        (site && site !== 'same-origin' && site !== 'none') || (origin && origin !== 'null' && new URL(origin).host !== host) || origin === 'null';
      if (crossSite) return fail(c, 403, 'CSRF', 'a request with the authToken cookie must come from this origin');
    }
    c.set('token', m.token);
    c.set('viaCookie', !!cookie);
    await next();
  });

  /** Takes the backup-directory lock for a state-changing run, or answers 409 naming who holds it. */
  async function lockOr409(c: Context, command: string): Promise<Lock | Response> {
    if (busy)
      return fail(
        c,
        409,
        'LOCKED',
        `another run holds the lock on ${cfg.backupDir}: ${busy.job ? `job ${busy.job.id} (${busy.job.kind})` : 'a request of this server'}`,
      );
    // reserved before the first await: two requests in the same moment both passed the check above
    busy = {};
    try {
      const lock = await acquireLock(cfg.backupDir, command, { waitMs: 0 });
      busy.lock = lock;
      return lock;
    } catch (err) {
      busy = undefined;
      const e = toBackupError(err);
      return sendError(c, e);
    }
  }
  const release = () => {
    busy?.lock?.release();
    busy = undefined;
  };

  /** backup.log and status.json as a CLI run writes them. */
  async function record(name: string, type: string | undefined, started: number, out: JobOutcome | undefined, err: unknown, log: Record<string, unknown>) {
    const e = err === undefined ? undefined : toBackupError(err);
    const exitCode = e ? e.exitCode : (out?.exitCode ?? 0);
    // loaded by the first run, not at start: an idle server holds only what its read routes need
    const { appendLog } = await import('../catalog/log.js');
    const { reportRun } = await import('../notify/report.js');
    await appendLog(cfg.backupDir, {
      time: new Date(started).toISOString(),
      command: name,
      result: e ? 'error' : exitCode === 0 ? 'ok' : 'warning',
      duration_ms: Date.now() - started,
      exit_code: exitCode,
      via: 'serve',
      ...log,
      ...(e ? { error: e.message } : {}),
    }).catch(() => {});
    await reportRun(
      {
        name,
        label: type ? `${name} --type ${type}` : name,
        type: type as 'full' | undefined,
        ok: !e && exitCode === 0,
        exitCode,
        durationMs: Date.now() - started,
        error: e?.message,
        backupId: typeof log.id === 'string' ? log.id : undefined,
      },
      { backupDir: cfg.backupDir, log: () => {} },
    );
  }

  /** Starts a job under the lock; the lock is released when it ends. */
  function startLocked(
    c: Context,
    kind: string,
    type: string | undefined,
    run: (signal: AbortSignal, onProgress: (p: ProgressEvent) => void) => Promise<JobOutcome & { log?: Record<string, unknown> }>,
  ): Response {
    const started = Date.now();
    const job = jobs.start(
      kind,
      async (signal, onProgress) => {
        let out: (JobOutcome & { log?: Record<string, unknown> }) | undefined;
        try {
          out = await run(signal, onProgress);
          return out;
        } catch (err) {
          await record(kind, type, started, undefined, err, {});
          throw err;
        } finally {
          if (out) await record(kind, type, started, out, undefined, out.log ?? {});
        }
      },
      release,
    );
    if (busy) busy.job = job;
    return jobAccepted(c, job);
  }

  const jobAccepted = (c: Context, job: Job) => {
    c.header('location', `/jobs/${job.id}`);
    return send(c, 202, { ok: true, job_id: job.id, state: job.state, kind: job.kind, status_url: `/jobs/${job.id}`, events_url: `/jobs/${job.id}/events` });
  };

  // --- the seed's five routes -------------------------------------------------------------------
  app.post('/backups/create', async (c) => {
    const body = parse(CreateBody, await jsonBody(c));
    if (!body.ok) return sendError(c, new BackupError('USAGE', body.message), body.field);
    const type = body.data.type;
    // what `create` runs, the same way: the hooks around it, the Docker volumes after it (ops/create-run.ts)
    const { resolveHooks, hookLog } = await import('../ops/hooks.js');
    const { resolveVolumeSettings } = await import('../ops/volumes.js');
    const hooks = resolveHooks(cfg.file, cfg.env);
    const volumes = resolveVolumeSettings(cfg);
    if (type === 'volumes' && !volumes)
      return sendError(c, new BackupError('USAGE', 'field \'type\' is volumes but no volume is named (VOLUMES or the config key "volumes")'), 'type');
    const { checkInputs } = await import('../ops/create.js');
    // with a before hook the storage directory may be filled by it: runCreate checks again once it ran
    if (type !== 'volumes' && !hooks.before.length) await checkInputs(cfg, type, {});
    const lock = await lockOr409(c, `create --type ${type} (serve)`);
    if (lock instanceof Response) return lock;
    return startLocked(c, 'create', type, async (signal, onProgress) => {
      const { runCreateWithHooks, volumeLog } = await import('../ops/create-run.js');
      const { createDocument, volumesDocument } = await import('../results/documents.js');
      const started = Date.now();
      const run = await runCreateWithHooks(cfg, { type, hooks, volumes, storage: {}, signal, onProgress });
      const log = { hooks: hookLog(run.hooks), volumes: run.volumes && volumeLog(run.volumes) };
      const failedAfter = run.failedAfter.length > 0;
      if (!run.result) {
        const doc = volumesDocument(run.volumes ?? [], run.hooks, run.failedAfter, Date.now() - started);
        return { document: doc, exitCode: failedAfter ? 1 : 0, log: { type: 'volumes', status: 'ok', size: doc.sizeBytes, ...log } };
      }
      const result = run.result;
      return {
        document: createDocument(result, { volumes: run.volumes, hooks: run.hooks.length ? run.hooks : undefined }),
        exitCode: !result.ok || failedAfter ? 1 : result.skipped.length ? EXIT_SKIPPED : 0,
        log: {
          type: result.type,
          id: result.id,
          status: result.status,
          size: result.sizeBytes,
          backups: result.backups.map((b) => `${b.type}:${b.id}`),
          ...log,
        },
      };
    });
  });

  app.get('/backups/list', async (c) => {
    const raw = c.req.query('backup_type') ?? c.req.query('type') ?? 'all';
    const q = parse(v.picklist(['all', ...TYPES], 'must be one of all, full, database, storage'), raw);
    if (!q.ok) return sendError(c, new BackupError('USAGE', "query 'backup_type' must be one of all, full, database, storage"), 'backup_type');
    const snap = await catalog.get();
    // the document holds each backup's age_seconds: a text made in another second is stale too
    const second = Math.floor(Date.now() / 1000);
    if (listText?.generation !== snap.generation || listText.second !== second) listText = { generation: snap.generation, second, texts: new Map() };
    let text = listText.texts.get(q.data);
    if (text === undefined) {
      text = jsonText(listDocument(q.data === 'all' ? snap.entries : snap.entries.filter((e) => e.type === q.data)));
      listText.texts.set(q.data, text);
    }
    return c.body(text, 200, { 'content-type': 'application/json; charset=utf-8' });
  });

  app.get('/backups/stats', async (c) => {
    const { getStats } = await import('../ops/stats.js');
    return send(c, 200, await getStats(cfg.backupDir, new Date(), (await catalog.get()).entries));
  });

  app.post('/backups/restore', async (c) => {
    const body = parse(RestoreBody, await jsonBody(c));
    if (!body.ok) return sendError(c, new BackupError('USAGE', body.message), body.field);
    let ref: string;
    try {
      ref = confineBackupPath(cfg.backupDir, body.data.backup_path);
    } catch (err) {
      return sendError(c, err, 'backup_path');
    }
    const { resolveRestoreSource } = await import('../ops/restore-source.js');
    const source = await resolveRestoreSource(cfg.backupDir, ref).catch((err) => err as Error);
    if (source instanceof Error) return sendError(c, source, 'backup_path');
    const lock = await lockOr409(c, `restore ${source.entry.id} (serve)`);
    if (lock instanceof Response) return lock;
    return startLocked(c, 'restore', undefined, async (signal, onProgress) => {
      const { restoreLocked } = await import('../ops/restore.js');
      const result = await restoreLocked(cfg, source, { verify: body.data.verify_checksum, signal, onProgress });
      return { document: result, exitCode: result.cancelled ? 1 : 0, log: { id: result.id, type: result.type, verified: result.verified } };
    });
  });

  app.post('/backups/rotate', async (c) => {
    const raw = c.req.query('max_backups');
    if (raw !== undefined && !/^\d{1,6}$/.test(raw)) return sendError(c, new BackupError('USAGE', "query 'max_backups' must be a whole number"), 'max_backups');
    const n = raw === undefined ? undefined : Number(raw);
    if (n === 0) return sendError(c, new BackupError('USAGE', "query 'max_backups' must be at least 1 (0 would remove every backup)"), 'max_backups');
    const dryRun = c.req.query('dry_run') === 'true';
    const policy = n === undefined ? cfg.retention : { keepLast: n };
    const lock = await lockOr409(c, 'rotate (serve)');
    if (lock instanceof Response) return lock;
    const started = Date.now();
    try {
      const { runRotate } = await import('../ops/rotate.js');
      const r = await runRotate(cfg, { policy, dryRun });
      catalog.invalidate();
      page.invalidate();
      if (!dryRun)
        await record('rotate', undefined, started, { document: r, exitCode: 0 }, undefined, {
          removed: r.removed.map((x) => `${x.type}:${x.id}`),
          freed: r.freedBytes,
        });
      return send(c, 200, r);
    } finally {
      release();
    }
  });

  // --- the rest of the CLI's verbs ------------------------------------------------------------
  app.get('/backups/check', async (c) => {
    const { checkBackups, enabledTypes } = await import('../ops/check.js');
    // the replication lag as recorded by the last syncs (no remote is contacted), judged like check --max-replication-lag
    const lag = cfg.env.BACKUP_CHECK_MAX_REPLICATION_LAG;
    const maxReplicationLagMs = lag ? (await import('../schedule/duration.js')).parseDuration(lag, 'BACKUP_CHECK_MAX_REPLICATION_LAG') : undefined;
    const { entries } = await catalog.get();
    const r = await checkBackups({
      backupDir: cfg.backupDir,
      maxAgeMs: opts.maxAgeMs,
      types: enabledTypes(cfg.env),
      includeOtherRuns: true,
      maxReplicationLagMs,
      entries,
    });
    return send(c, 200, r);
  });

  app.post('/backups/verify', async (c) => {
    const body = parse(VerifyBody, await jsonBody(c));
    if (!body.ok) return sendError(c, new BackupError('USAGE', body.message), body.field);
    const { verifyBackups } = await import('../ops/verify.js');
    const job = jobs.start('verify', async (signal, onProgress) => {
      const ref = body.data.backup === 'latest' ? undefined : body.data.backup;
      const report = await verifyBackups(cfg.backupDir, { ref, latest: !ref && !body.data.all, all: body.data.all }, { signal, onProgress, config: cfg });
      return { document: report, exitCode: report.ok ? 0 : 3 };
    });
    return jobAccepted(c, job);
  });

  app.post('/backups/drill', async (c) => {
    const body = parse(DrillBody, await jsonBody(c));
    if (!body.ok) return sendError(c, new BackupError('USAGE', body.message), body.field);
    const { runDrill, drillRecord } = await import('../ops/drill.js');
    const { recordDrill } = await import('../catalog/status.js');
    const job = jobs.start('drill', async (signal, onProgress) => {
      const r = await runDrill(cfg, { type: body.data.type, signal, onProgress });
      await recordDrill(cfg.backupDir, drillRecord(r)).catch(() => {});
      return { document: r, exitCode: r.result === 'passed' ? 0 : r.result === 'target-missed' ? 1 : 3 };
    });
    return jobAccepted(c, job);
  });

  app.post('/backups/sync', async (c) => {
    const body = parse(v.strictObject({ remote: v.optional(v.string('must be a string')) }, 'must be a JSON object'), await jsonBody(c));
    if (!body.ok) return sendError(c, new BackupError('USAGE', body.message), body.field);
    const { loadConfiguredRemotes } = await import('../remote/config.js');
    const remotes = await loadConfiguredRemotes({ env: cfg.env, fileRemotes: cfg.file.remotes, configFile: cfg.configFile });
    const names = body.data.remote ? [body.data.remote] : remotes.remotes.filter((r) => r.enabled).map((r) => r.name);
    const job = jobs.start('sync', async (signal) => {
      // the CLI's sync, not a bare upload: an encrypting remote gets only ciphertext, the replication
      // record in status.json is kept, and the Docker volumes' backup directories go too
      const { syncRemote } = await import('../ops/sync.js');
      const { remoteRecipients } = await import('../offsite/remote-encryption.js');
      const { openMarkedRemote } = await import('../offsite/remote-marker.js');
      const results: { remote: string; ok: boolean; result?: unknown; error?: string }[] = [];
      for (const name of names) {
        try {
          const url = remotes.remotes.find((r) => r.name === name)?.url ?? name;
          const encryptTo = remoteRecipients(remotes, name);
          const open = () => openMarkedRemote(remotes, name, cfg.env);
          results.push({ remote: name, ok: true, result: await syncRemote(open, { name, url }, cfg.backupDir, { signal, encryptTo }) });
        } catch (err) {
          results.push({ remote: name, ok: false, error: toBackupError(err).message });
        }
      }
      return { document: results, exitCode: results.every((r) => r.ok) ? 0 : 1 };
    });
    return jobAccepted(c, job);
  });

  app.get('/metrics', async (c) => {
    const { collectMetrics, renderMetrics } = await import('../notify/metrics.js');
    return c.text(renderMetrics(await collectMetrics(cfg.backupDir, (await catalog.get()).entries)), 200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    });
  });

  app.get('/backups/:id', async (c) => {
    const id = c.req.param('id');
    const entries = (await catalog.get()).entries.filter((e) => e.id === id);
    if (!entries.length) return fail(c, 404, 'NOT_FOUND', `no backup '${id}' in the backup directory`);
    return send(c, 200, listDocument(entries));
  });

  // --- jobs -------------------------------------------------------------------------------------
  app.get('/jobs/:id', (c) => {
    const job = jobs.get(c.req.param('id'));
    return job ? send(c, 200, job) : fail(c, 404, 'NOT_FOUND', `no job ${c.req.param('id')}`);
  });
  const cancel = (c: Context) => {
    const job = jobs.cancel(c.req.param('id') ?? '');
    return job ? send(c, 202, job) : fail(c, 404, 'NOT_FOUND', `no job ${c.req.param('id')}`);
  };
  app.post('/jobs/:id/cancel', cancel);
  app.delete('/jobs/:id', cancel);

  /** SSE: `progress` and `done` of one job, or (id '*') `start`, `progress` and `done` of every job. */
  const events = async (c: Context, id: string | undefined) => {
    const { streamSSE } = await import('hono/streaming');
    return streamSSE(c, async (stream) => {
      const existing = id ? jobs.get(id) : undefined;
      if (id && !existing) {
        await stream.writeSSE({ event: 'error', data: JSON.stringify({ message: `no job ${id}` }) });
        return;
      }
      if (existing && existing.state !== 'running') {
        await stream.writeSSE({ event: 'done', data: jsonLine(existing) });
        return;
      }
      let closed = false;
      await new Promise<void>((resolve) => {
        const forJob = (j: Job) => !id || j.id === id;
        const onEvent = (name: string) => (j: Job) => {
          if (!forJob(j) || closed) return;
          stream.writeSSE({ event: name, data: jsonLine(j) }).catch(() => finish());
          if (name === 'done' && id) finish();
        };
        const handlers = { start: onEvent('start'), progress: onEvent('progress'), done: onEvent('done') };
        const ping = setInterval(() => stream.write(': ping\n\n').catch(() => finish()), 15_000);
        function finish() {
          if (closed) return;
          closed = true;
          clearInterval(ping);
          for (const [n, h] of Object.entries(handlers)) jobs.off(n, h);
          resolve();
        }
        for (const [n, h] of Object.entries(handlers)) jobs.on(n, h);
        // the client went away: stop listening, nothing else happens to the job
        stream.onAbort(finish);
      });
    });
  };
  app.get('/jobs/:id/events', (c) => events(c, c.req.param('id')));
  app.get('/events', (c) => events(c, undefined));

  app.get('/', async (c) => c.body(await page.render(c.get('token').scope, jobs.running()), 200, { 'content-type': 'text/html; charset=utf-8' }));

  return { app, jobs };
}

function clientKey(c: Context): string {
  const incoming = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming;
  return incoming?.socket?.remoteAddress ?? 'unix';
}
