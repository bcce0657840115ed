/**
 * Issue 26: the OpenAPI document at /openapi.json held to the real server (the built binary's serve):
 * every route of the app is documented and nothing else; the scope each operation states is the one
 * enforced (no token: 401, the scope below: 403, the stated one: through); every response the real
 * server gives in a tour of the API has a documented status, content type and, for JSON, a body that
 * validates against the documented schema (test/helpers/json-schema.ts); every operation is seen.
 */
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/api/app.js';
import { resolveConfig } from '../../src/config.js';
import { type AppFixture, makeApp, rmrf } from '../helpers/fixtures.js';
import { validate } from '../helpers/json-schema.js';
import { type Served, makeToken, serve, waitJob } from '../helpers/serve.js';

type Doc = Record<string, unknown> & { paths: Record<string, Record<string, Operation>> };
interface Operation {
  'x-scope': 'read' | 'trigger' | 'restore' | null;
  responses: Record<string, { content?: Record<string, { schema: Record<string, unknown> }> }>;
}

let app: AppFixture;
let server: Served;
let doc: Doc;
const tokens: Record<string, string> = {};
const seen = new Set<string>();

beforeAll(async () => {
  app = makeApp({ events: 20, minimalStorage: true });
  const config = path.join(app.cwd, 'config.json');
  for (const s of ['read', 'trigger', 'restore']) tokens[s] = await makeToken(app.cwd, config, s);
  server = await serve(app.cwd, ['--config', config, ...app.flags]);
  const r = await fetch(`${server.url}/openapi.json`);
  expect(r.status).toBe(200);
  doc = (await r.json()) as Doc;
}, 60_000);

afterAll(async () => {
  await server?.stop();
  rmrf(app?.cwd);
});

const bearer = (scope: string) => ({ authorization: `Bearer ${tokens[scope]}` });

/** The documented path template a concrete path falls under. */
function template(p: string): string | undefined {
  const bare = p.split('?')[0];
  const exact = Object.keys(doc.paths).find((t) => t === bare);
  if (exact) return exact;
  return Object.keys(doc.paths).find((t) => t.includes('{') && new RegExp(`^${t.replace(/\{\w+\}/g, '[^/]+')}$`).test(bare));
}

/** Checks one real response against the document and records that it was seen. */
async function conforms(method: string, p: string, r: Response, body?: string): Promise<unknown> {
  const t = template(p);
  expect(t, `${method} ${p} is not in the document`).toBeDefined();
  const op = doc.paths[t!][method.toLowerCase()];
  expect(op, `${method} ${t} is not in the document`).toBeDefined();
  const documented = op.responses[String(r.status)];
  expect(documented, `${method} ${p} answered ${r.status}, which the document does not list (${Object.keys(op.responses).join(', ')})`).toBeDefined();
  seen.add(`${method.toLowerCase()} ${t}`);
  const type = (r.headers.get('content-type') ?? '').split(';')[0];
  if (!documented.content) return undefined;
  expect(Object.keys(documented.content), `${method} ${p} ${r.status} content type`).toContain(type);
  if (type !== 'application/json') return undefined;
  const text = body ?? (await r.text());
  const value = JSON.parse(text) as unknown;
  const errors = validate(value, documented.content[type].schema, doc);
  expect(errors, `${method} ${p} ${r.status}: ${text.slice(0, 400)}`).toEqual([]);
  return value;
}

async function call(method: string, p: string, headers: Record<string, string> = {}, body?: string): Promise<{ r: Response; value: unknown }> {
  const r = await fetch(`${server.url}${p}`, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
    body,
    redirect: 'manual',
  });
  // an event stream: the headers are what is checked; a stream that stays open is closed here
  if ((r.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    await conforms(method, p, r);
    await r.body?.cancel();
    return { r, value: undefined };
  }
  return { r, value: await conforms(method, p, r) };
}

describe('GET /openapi.json', () => {
  it('documents every route of the app and nothing else', () => {
    const { app: hono } = buildApp({ cfg: resolveConfig({ backupDir: app.backupDir }, {}), maxAgeMs: 1000 });
    const real = new Set(hono.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`));
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, ms]) => Object.keys(ms).map((m) => `${m} ${p}`)));
    expect([...documented].sort()).toEqual([...real].sort());
    expect(doc.openapi).toBe('3.1.0');
  });

  it('states the scope the server enforces for every operation', async () => {
    const below = { trigger: 'read', restore: 'trigger' } as const;
    // bodies and ids that fail after the token check: the scope is proven without starting any work
    const probe: Record<string, { path?: string; body?: string }> = {
      'post /backups/create': { body: '{"type":"weekly"}' },
      'post /backups/restore': { body: '{}' },
      'post /backups/rotate': { path: '/backups/rotate?max_backups=x' },
      'post /backups/verify': { body: '{"nope":1}' },
      'post /backups/drill': { body: '{"type":"weekly"}' },
      'post /backups/sync': { body: '{"nope":1}' },
    };
    for (const [p, methods] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(methods)) {
        const key = `${m} ${p}`;
        const concrete = probe[key]?.path ?? p.replace('{id}', 'no-such-id');
        const body = probe[key]?.body ?? (m === 'get' || m === 'delete' ? undefined : m === 'post' && p === '/login' ? undefined : '{}');
        const scope = op['x-scope'];
        if (scope === null) {
          // no token needed: never the API's 401 (POST /login answers its own form with 401 to a wrong token)
          const { r } = await call(m.toUpperCase(), concrete, {}, body);
          expect(r.headers.get('www-authenticate'), key).toBeNull();
          expect(r.status === 401 && p !== '/login', `${key} answered 401 without a token`).toBe(false);
          continue;
        }
        const none = await call(m.toUpperCase(), concrete, {}, body);
        expect(none.r.status, `${key} without a token`).toBe(401);
        if (scope !== 'read') {
          const low = await call(m.toUpperCase(), concrete, bearer(below[scope]), body);
          expect(low.r.status, `${key} with a '${below[scope]}' token`).toBe(403);
        }
        const ok = await call(m.toUpperCase(), concrete, bearer(scope), body);
        expect([401, 403], `${key} with a '${scope}' token answered ${ok.r.status}`).not.toContain(ok.r.status);
      }
    }
  }, 60_000);

  it('the real responses of a tour of the API match the document, and every operation is seen', async () => {
    const t = bearer('restore');
    await call('GET', '/healthz');
    const created = await call('POST', '/backups/create', t, '{"type":"full"}');
    expect(created.r.status).toBe(202);
    const jobId = (created.value as { job_id: string }).job_id;
    const done = await waitJob(server.url, jobId, t);
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    const job = await call('GET', `/jobs/${jobId}`, t);
    const result = (job.value as { result: { id: string } }).result;
    expect(validate(result, { $ref: '#/components/schemas/CreateResult' }, doc)).toEqual([]);
    await call('GET', `/jobs/${jobId}/events`, t);
    await call('GET', '/events', t);
    await call('GET', '/healthz');
    await call('GET', '/backups/list?backup_type=all', t);
    await call('GET', '/backups/list?backup_type=weekly', t);
    await call('GET', '/backups/stats', t);
    await call('GET', '/backups/check', t);
    await call('GET', `/backups/${result.id}`, t);
    await call('GET', '/backups/20000101_000000', t);
    await call('GET', '/metrics', t);
    await call('GET', '/', t);
    await call('GET', '/');
    const verify = await call('POST', '/backups/verify', t, '{}');
    await waitJob(server.url, (verify.value as { job_id: string }).job_id, t);
    const sync = await call('POST', '/backups/sync', t, '{}');
    await waitJob(server.url, (sync.value as { job_id: string }).job_id, t);
    const drill = await call('POST', '/backups/drill', t, '{"type":"database"}');
    const drillId = (drill.value as { job_id: string }).job_id;
    await call('POST', `/jobs/${drillId}/cancel`, t);
    await waitJob(server.url, drillId, t);
    await call('DELETE', `/jobs/${drillId}`, t);
    await call('DELETE', '/jobs/no-such-job', t);
    const restore = await call('POST', '/backups/restore', t, JSON.stringify({ backup_path: result.id, verify_checksum: true }));
    expect(restore.r.status).toBe(202);
    await waitJob(server.url, (restore.value as { job_id: string }).job_id, t);
    await call('POST', '/backups/restore', t, '{"backup_path":"../../../etc/passwd"}');
    await call('POST', '/backups/rotate?max_backups=7&dry_run=true', t);
    await call('POST', '/backups/rotate?max_backups=0', t);
    await call('GET', '/openapi.json');
    const login = await fetch(`${server.url}/login`, { method: 'POST', body: new URLSearchParams({ token: tokens.read }), redirect: 'manual' });
    await conforms('POST', '/login', login);
    const bad = await fetch(`${server.url}/login`, { method: 'POST', body: new URLSearchParams({ token: 'nope' }), redirect: 'manual' });
    await conforms('POST', '/login', bad);
    const all = Object.entries(doc.paths).flatMap(([p, ms]) => Object.keys(ms).map((m) => `${m} ${p}`));
    expect(all.filter((k) => !seen.has(k))).toEqual([]);
  }, 120_000);
});
