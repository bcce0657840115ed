import { VERSION } from '../version.js';
import type { Scope } from './tokens.js';

/**
 * The OpenAPI 3.1 document served at /openapi.json. Written by hand beside the routes, and held to them
 * by test/e2e/serve-openapi.test.ts: every route of the app is here and nothing else, the scope each
 * operation states (`x-scope`) is the one the server enforces, and the real responses validate against
 * these schemas. The JSON of a result is what `--json` prints for the same command (src/results/).
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const str: Schema = { type: 'string' };
const int: Schema = { type: 'integer' };
const bool: Schema = { type: 'boolean' };
const nullable = (s: Schema): Schema => ({ ...s, type: [s.type as string, 'null'] });
const obj = (properties: Record<string, Schema>, required: string[] = Object.keys(properties), extra: Schema = {}): Schema => ({
  type: 'object',
  properties,
  required,
  ...extra,
});
const TYPES = ['full', 'database', 'storage'];

const schemas: Record<string, Schema> = {
  Error: obj(
    {
      ok: { const: false },
      error: obj(
        {
          code: str,
          exit_code: int,
          message: str,
          hint: str,
          field: { type: 'string', description: 'the request field that is wrong (400)' },
        },
        ['code', 'message'],
      ),
    },
    ['ok', 'error'],
  ),
  JobAccepted: obj({
    ok: { const: true },
    job_id: str,
    state: { enum: ['running', 'succeeded', 'failed', 'cancelled'] },
    kind: str,
    status_url: str,
    events_url: str,
  }),
  Job: obj(
    {
      id: str,
      kind: { enum: ['create', 'restore', 'verify', 'drill', 'sync'] },
      state: { enum: ['running', 'succeeded', 'failed', 'cancelled'] },
      created_at: { type: 'string', format: 'date-time' },
      finished_at: { type: 'string', format: 'date-time' },
      progress: { type: 'object', description: 'the last progress event (phase, subject, counts)' },
      result: { description: 'the document `--json` prints for the command (create: CreateResult)' },
      exit_code: { type: 'integer', description: 'what the CLI would have exited with' },
      error: { type: 'object', description: 'the error part of an Error document' },
    },
    ['id', 'kind', 'state', 'created_at'],
  ),
  Backup: obj(
    {
      type: { enum: TYPES },
      id: { type: 'string', pattern: '^\\d{8}_\\d{6}(_\\d+)?$' },
      created_at: { type: 'string', format: 'date-time' },
      size_bytes: { type: 'integer', description: "a full backup's: its components'" },
      age_seconds: int,
      file_count: nullable(int),
      status: { enum: ['ok', 'partial', 'incomplete', 'in-progress', 'damaged'] },
      reason: nullable(str),
      sidecar: nullable(str),
      database: nullable(str),
      storage: nullable(str),
      level: int,
      base: nullable(str),
      references: { type: 'array', items: str },
    },
    ['type', 'id', 'created_at', 'size_bytes', 'age_seconds', 'file_count', 'status', 'reason', 'sidecar'],
  ),
  BackupList: { type: 'array', items: ref('Backup') },
  Stats: obj(
    {
      backup_dir: str,
      types: {
        type: 'array',
        items: obj(
          {
            type: { enum: TYPES },
            count: int,
            ok: int,
            not_ok: int,
            size_bytes: int,
            newest: ref('StatsPoint'),
            oldest: ref('StatsPoint'),
          },
          ['type', 'count', 'ok', 'not_ok', 'size_bytes'],
        ),
      },
      total_count: int,
      total_bytes: int,
      free_bytes: int,
      databases: {
        type: 'array',
        description: 'present when there are PostgreSQL backups: each database by name',
        items: obj(
          {
            name: str,
            kind: str,
            count: int,
            size_bytes: int,
            newest: obj({ id: str, created_at: { type: 'string', format: 'date-time' }, age_seconds: int, size_bytes: int }),
          },
          ['name', 'kind', 'count', 'size_bytes'],
        ),
      },
    },
    ['backup_dir', 'types', 'total_count', 'total_bytes', 'free_bytes'],
  ),
  StatsPoint: obj({ id: str, created_at: { type: 'string', format: 'date-time' }, age_seconds: int }),
  Check: obj(
    {
      ok: bool,
      checked_at: { type: 'string', format: 'date-time' },
      backup_dir: str,
      max_age_seconds: int,
      types: {
        type: 'array',
        items: obj({ type: { enum: TYPES }, ok: bool, newest_id: nullable(str), newest_at: nullable(str), age_seconds: nullable(int), reason: str }, [
          'type',
          'ok',
          'newest_id',
          'newest_at',
          'age_seconds',
        ]),
      },
      runs: { type: 'array', items: { type: 'object' } },
      drill: { type: 'object' },
      reasons: { type: 'array', items: str },
    },
    ['ok', 'checked_at', 'backup_dir', 'max_age_seconds', 'types', 'runs', 'reasons'],
  ),
  Rotate: obj({
    dry_run: bool,
    policy: { type: 'object' },
    kept: { type: 'array', items: obj({ type: { enum: TYPES }, id: str, reasons: { type: 'array', items: str }, size_bytes: int, disk_bytes: int }) },
    removed: {
      type: 'array',
      items: obj({ type: { enum: TYPES }, id: str, reason: str, files: { type: 'array', items: str }, size_bytes: int, disk_bytes: int }),
    },
    freed_bytes: int,
  }),
  CreateResult: obj(
    {
      ok: bool,
      type: { enum: [...TYPES, 'volumes'] },
      id: str,
      status: { enum: ['ok', 'partial', 'failed'] },
      backups: { type: 'array', items: { type: 'object' } },
      size_bytes: int,
      duration_ms: int,
      errors: { type: 'array', items: str },
      warnings: { type: 'array', items: str },
      skipped: { type: 'array' },
      volumes: { type: 'array', items: { type: 'object' }, description: 'the Docker volumes backed up after it (VOLUMES)' },
      hooks: { type: 'array', items: { type: 'object' }, description: 'the hooks run around it' },
    },
    ['ok', 'type', 'size_bytes', 'duration_ms'],
  ),
};

const TEXT = { 'text/plain': { schema: str } };
const HTML = { 'text/html': { schema: str } };
const SSE = { 'text/event-stream': { schema: { type: 'string', description: 'events `start`, `progress`, `done` (data: a Job), `error`' } } };
const json = (schema: Schema) => ({ 'application/json': { schema } });
const error = (description: string) => ({ description, content: json(ref('Error')) });

/** The answers every authenticated route may give. */
const AUTH_ERRORS = {
  '401': error('no token, or not a valid one (also an expired one)'),
  '403': error('the token lacks the scope, or a cookie request came from another origin (CSRF)'),
  '429': error('too many failed authentications from this address'),
};

interface Op {
  summary: string;
  scope: Scope | null;
  responses: Record<string, unknown>;
  requestBody?: Schema;
  parameters?: Schema[];
}

const idParam = (description: string): Schema => ({ name: 'id', in: 'path', required: true, schema: str, description });
const jobOp = (summary: string, scope: Scope, body: Schema | undefined, extra: Record<string, unknown> = {}): Op => ({
  summary,
  scope,
  requestBody: body && { required: false, content: json(body) },
  responses: {
    '202': { description: 'the job started', content: json(ref('JobAccepted')) },
    '400': error('a body of the wrong shape (names the field)'),
    ...extra,
  },
});

const ops: Record<string, Record<string, Op>> = {
  '/healthz': {
    get: {
      summary: 'for uptime monitors: 200 while the newest backup of every enabled type is younger than --max-age',
      scope: null,
      responses: { '200': { description: 'fresh', content: TEXT }, '503': { description: 'a type is stale or missing', content: TEXT } },
    },
  },
  '/openapi.json': {
    get: { summary: 'this document', scope: null, responses: { '200': { description: 'OpenAPI 3.1', content: json({ type: 'object' }) } } },
  },
  '/login': {
    post: {
      summary: "the status page's sign-in form: the token becomes the authToken cookie (HttpOnly, SameSite=Strict)",
      scope: null,
      requestBody: { content: { 'application/x-www-form-urlencoded': { schema: obj({ token: str }) } } },
      responses: {
        '303': { description: 'signed in: to /' },
        '401': { description: 'not a valid token: the form again', content: HTML },
        '429': { description: 'too many failed attempts', content: TEXT },
      },
    },
  },
  '/': {
    get: {
      summary: 'the status page (server-rendered HTML, no external assets); without a session, the sign-in form (401)',
      scope: 'read',
      responses: {
        '200': { description: 'the page', content: HTML },
        '401': { description: 'the sign-in form', content: HTML },
        '403': AUTH_ERRORS['403'],
        '429': AUTH_ERRORS['429'],
      },
    },
  },
  '/backups/create': {
    post: jobOp(
      'create --type T: the hooks around the backup, the Docker volumes after it',
      'trigger',
      obj({ type: { enum: [...TYPES, 'volumes'], default: 'full' } }, [], { additionalProperties: false }),
      { '409': error('another run holds the backup-directory lock (names it)'), '507': error('not enough disk space') },
    ),
  },
  '/backups/list': {
    get: {
      summary: 'list --json',
      scope: 'read',
      parameters: [{ name: 'backup_type', in: 'query', schema: { enum: ['all', ...TYPES], default: 'all' } }],
      responses: { '200': { description: 'newest first', content: json(ref('BackupList')) }, '400': error('an unknown backup_type') },
    },
  },
  '/backups/stats': {
    get: {
      summary: 'stats --json',
      scope: 'read',
      responses: { '200': { description: 'counts, bytes, newest and oldest per type', content: json(ref('Stats')) } },
    },
  },
  '/backups/restore': {
    post: jobOp(
      'restore: a backup id, "latest", or the path of a backup file inside the backup directory',
      'restore',
      obj({ backup_path: { type: 'string', minLength: 1, maxLength: 4096 }, verify_checksum: { type: 'boolean', default: true } }, ['backup_path'], {
        additionalProperties: false,
      }),
      { '409': error('another run holds the backup-directory lock'), '422': error('the backup is damaged') },
    ),
  },
  '/backups/rotate': {
    post: {
      summary: 'rotate --json, under the lock',
      scope: 'restore',
      parameters: [
        {
          name: 'max_backups',
          in: 'query',
          schema: { type: 'string', pattern: '^\\d{1,6}$' },
          description: 'keep the N newest per type (at least 1); default: the configured retention',
        },
        { name: 'dry_run', in: 'query', schema: { enum: ['true', 'false'] } },
      ],
      responses: {
        '200': { description: 'what was kept and removed', content: json(ref('Rotate')) },
        '400': error('max_backups is not a whole number, or 0'),
        '409': error('another run holds the backup-directory lock'),
      },
    },
  },
  '/backups/check': {
    get: {
      summary: 'check --json with --max-age',
      scope: 'read',
      responses: { '200': { description: 'the monitoring verdict', content: json(ref('Check')) } },
    },
  },
  '/backups/verify': {
    post: jobOp('verify --json', 'trigger', obj({ backup: str, all: bool }, [], { additionalProperties: false })),
  },
  '/backups/drill': {
    post: jobOp('drill --json, recorded in status.json', 'trigger', obj({ type: { enum: TYPES } }, [], { additionalProperties: false })),
  },
  '/backups/sync': {
    post: jobOp('upload to the remote (default: every enabled one)', 'trigger', obj({ remote: str }, [], { additionalProperties: false })),
  },
  '/backups/{id}': {
    get: {
      summary: 'the list --json entries of one id',
      scope: 'read',
      parameters: [idParam('a backup id')],
      responses: {
        '200': { description: 'its entries (a full run: full, database, storage)', content: json(ref('BackupList')) },
        '404': error('no backup with that id'),
      },
    },
  },
  '/metrics': {
    get: {
      summary: 'the Prometheus text of --metrics-file',
      scope: 'read',
      responses: { '200': { description: 'text exposition format 0.0.4', content: TEXT } },
    },
  },
  '/jobs/{id}': {
    get: {
      summary: 'state, last progress, result, error',
      scope: 'read',
      parameters: [idParam('a job id')],
      responses: { '200': { description: 'the job', content: json(ref('Job')) }, '404': error('no such job') },
    },
    delete: {
      summary: 'cancel: the operation stops and removes its partial files',
      scope: 'trigger',
      parameters: [idParam('a job id')],
      responses: { '202': { description: 'the job, being cancelled', content: json(ref('Job')) }, '404': error('no such job') },
    },
  },
  '/jobs/{id}/cancel': {
    post: {
      summary: 'cancel (as DELETE /jobs/{id})',
      scope: 'trigger',
      parameters: [idParam('a job id')],
      responses: { '202': { description: 'the job, being cancelled', content: json(ref('Job')) }, '404': error('no such job') },
    },
  },
  '/jobs/{id}/events': {
    get: {
      summary: "Server-Sent Events of one job: 'progress', then 'done' (or 'error' for an unknown job)",
      scope: 'read',
      parameters: [idParam('a job id')],
      responses: { '200': { description: 'the event stream', content: SSE } },
    },
  },
  '/events': {
    get: {
      summary: "Server-Sent Events of every job: 'start', 'progress', 'done'",
      scope: 'read',
      responses: { '200': { description: 'the event stream', content: SSE } },
    },
  },
};

function operation(path: string, method: string, op: Op): Schema {
  return {
    operationId: `${method}${path.replace(/[^a-zA-Z0-9]+(.)?/g, (_, c: string | undefined) => (c ? c.toUpperCase() : ''))}` || method,
    summary: op.summary,
    'x-scope': op.scope,
    security: op.scope ? [{ bearer: [] }, { cookie: [] }] : [],
    ...(op.parameters ? { parameters: op.parameters } : {}),
    ...(op.requestBody ? { requestBody: op.requestBody } : {}),
    responses: {
      ...(op.scope && path !== '/' ? AUTH_ERRORS : {}),
      '413': error('a request body over the limit (64 KiB)'),
      ...op.responses,
    },
  };
}

let doc: Schema | undefined;

export function openApiDocument(): Schema {
  doc ??= {
    openapi: '3.1.0',
    info: {
      title: 'vertex-backup serve',
      version: VERSION,
      description:
        "The seed admin panel's /backups/… routes and the rest of the CLI's verbs. Long operations answer 202 with a job. x-scope: the token scope an operation needs (read < trigger < restore); null: no token.",
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'vertex-backup token create --scope read|trigger|restore' },
        cookie: { type: 'apiKey', in: 'cookie', name: 'authToken', description: "the seed's cookie; state-changing requests must come from this origin" },
      },
      schemas,
    },
    paths: Object.fromEntries(
      Object.entries(ops).map(([p, methods]) => [p, Object.fromEntries(Object.entries(methods).map(([m, op]) => [m, operation(p, m, op)]))]),
    ),
  };
  return doc;
}
