/**
 * Issue 17, item 4: `--metrics-file PATH` (env METRICS_FILE) writes a node_exporter textfile-collector
 * file after each run, atomically. Parsed here with a real Prometheus text-format parser.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
// @ts-expect-error: the package ships no types
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, run } from '../helpers/cli.js';
import { type AppFixture, flipByte, makeApp, rmrf } from '../helpers/fixtures.js';

interface Family {
  name: string;
  help: string;
  type: string;
  metrics: { value: string; labels?: Record<string, string> }[];
}

const apps: AppFixture[] = [];
afterAll(() => {
  for (const a of apps) rmrf(a.cwd);
});

function parse(file: string): Map<string, Family> {
  const text = fs.readFileSync(file, 'utf8');
  const families = parsePrometheusTextFormat(text) as Family[];
  // every family has HELP and TYPE lines
  for (const f of families) {
    expect(text).toContain(`# HELP ${f.name} `);
    expect(text).toContain(`# TYPE ${f.name} ${f.type.toLowerCase()}`);
  }
  return new Map(families.map((f) => [f.name, f]));
}

const value = (m: Map<string, Family>, name: string, labels: Record<string, string> = {}) => {
  const f = m.get(name);
  expect(f, `${name} is in the file`).toBeDefined();
  const s = f!.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
  expect(s, `${name}${JSON.stringify(labels)}`).toBeDefined();
  return Number(s!.value);
};

describe('--metrics-file', () => {
  it('after create, verify and drill: last success, sizes, files, counts per type, drill RTO/RPO and result, last verify; atomic, 0644', async () => {
    const a = makeApp({ randomBytes: 512 * 1024 });
    apps.push(a);
    const dir = path.join(a.cwd, 'textfile');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'vertex_backup.prom');
    const t0 = Date.now() / 1000;
    const c = await run(['create', '--type', 'full', '--metrics-file', file, ...a.flags], { cwd: a.cwd });
    expect(c.code, describeRun(c)).toBe(0);
    let m = parse(file);
    expect(value(m, 'vertex_backup_last_success_timestamp_seconds', { job: 'create', type: 'full' })).toBeGreaterThanOrEqual(Math.floor(t0) - 1);
    expect(value(m, 'vertex_backup_backups', { type: 'full' })).toBe(1);
    expect(value(m, 'vertex_backup_backups', { type: 'database' })).toBe(1);
    expect(value(m, 'vertex_backup_last_backup_files', { type: 'storage' })).toBeGreaterThan(5);
    expect(value(m, 'vertex_backup_last_backup_size_bytes', { type: 'storage' })).toBeGreaterThan(512 * 1024);
    expect(value(m, 'vertex_backup_last_run_success', { job: 'create', type: 'full' })).toBe(1);
    expect(value(m, 'vertex_backup_last_run_duration_seconds', { job: 'create', type: 'full' })).toBeGreaterThan(0);
    expect(m.get("vertex_backup_backups")!.type).toBe("GAUGE");
    expect(m.has('vertex_backup_drill_rto_seconds'), 'no drill yet: no drill metrics').toBe(false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o644);

    // METRICS_FILE from the environment does the same
    const v = await run(['verify', ...a.flags], { cwd: a.cwd, env: { METRICS_FILE: file } });
    expect(v.code, describeRun(v)).toBe(0);
    m = parse(file);
    expect(value(m, 'vertex_backup_last_verify_success')).toBe(1);

    const d = await run(['drill', '--metrics-file', file, ...a.flags], { cwd: a.cwd });
    expect(d.code, describeRun(d)).toBe(0);
    m = parse(file);
    expect(value(m, 'vertex_backup_drill_last_success')).toBe(1);
    expect(value(m, 'vertex_backup_drill_last_result', { result: 'passed' })).toBe(1);
    expect(value(m, 'vertex_backup_drill_last_result', { result: 'failed' })).toBe(0);
    expect(value(m, 'vertex_backup_drill_rto_seconds', { source: 'local', type: 'full' })).toBeGreaterThan(0);
    expect(value(m, 'vertex_backup_drill_rto_target_seconds')).toBe(3600);
    expect(value(m, 'vertex_backup_drill_rpo_seconds', { type: 'full' })).toBeGreaterThanOrEqual(0);
    expect(value(m, 'vertex_backup_drill_rpo_target_seconds')).toBe(4 * 3600);
    expect(value(m, 'vertex_backup_last_run_success', { job: 'drill' })).toBe(1);

    // damage: verify fails, and the file says so
    const db = fs.readdirSync(path.join(a.backupDir, 'database')).find((n) => n.endsWith('.db'))!;
    flipByte(path.join(a.backupDir, 'database', db));
    const bad = await run(['verify', '--metrics-file', file, ...a.flags], { cwd: a.cwd });
    expect(bad.code).toBe(3);
    m = parse(file);
    expect(value(m, 'vertex_backup_last_verify_success')).toBe(0);
    expect(value(m, 'vertex_backup_last_run_exit_code', { job: 'verify' })).toBe(3);
    // only the file itself in the directory: the temp file was renamed, not left
    expect(fs.readdirSync(dir)).toEqual(['vertex_backup.prom']);
  });

  it('a metrics file that cannot be written is a warning, never a failed run', async () => {
    const a = makeApp({ minimalStorage: true });
    apps.push(a);
    const r = await run(['create', '--type', 'database', '--metrics-file', path.join(a.cwd, 'missing-dir', 'x.prom'), ...a.flags], { cwd: a.cwd });
    expect(r.code, describeRun(r)).toBe(0);
    expect(r.stderr).toMatch(/cannot write the metrics file .*missing-dir\/x\.prom/);
  });
});
