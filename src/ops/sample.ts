import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as v from 'valibot';
import { listBackups } from '../catalog/local-store.js';
import { compareIds } from '../catalog/names.js';
import { artifactFiles, type BackupType } from '../catalog/sidecar.js';
import { BackupError } from '../errors.js';
import { sha256File, writeFileAtomic } from '../fsutil.js';

/**
 * Coverage sampling: `verify --sample PCT` reads about PCT % of the stored bytes per run, the files not
 * yet read in the current cycle first, so repeated runs read every stored byte within ceil(100/PCT)
 * runs (each run reads at least its share unless fewer bytes remain), instead of hoping a random pick
 * gets there. Which files were read (and their checksums) is kept in the backup directory.
 */
export const SAMPLE_STATE_FILE = '.sample-state.json';

const ScopeSchema = v.object({
  cycle_started_at: v.string(),
  runs: v.number(),
  /** stored file (relative to the backup directory) → the checksum it was read with */
  covered: v.record(v.string(), v.string()),
});
const StateSchema = v.object({
  format: v.literal(1),
  scopes: v.record(v.string(), ScopeSchema),
  /** round-robin counters (the drill's share of the tree), by scope */
  rounds: v.optional(v.record(v.string(), v.number())),
});
type SampleState = v.InferOutput<typeof StateSchema>;
type Scope = v.InferOutput<typeof ScopeSchema>;

/** A data file a sample may choose (judge.ts's StoredFile is a store's listing entry, any file). */
export interface SampleFile {
  /** relative to the backup directory */
  rel: string;
  size: number;
  checksum: string;
  type: BackupType;
  id: string;
}

export function parsePercent(text: string, name = '--sample'): number {
  const n = Number(text);
  if (!(n > 0 && n <= 100)) throw new BackupError('USAGE', `${name} must be a percentage above 0 and at most 100, got '${text}'`, { argument: true });
  return n;
}

/** Every file a sidecar vouches for: data files and parts, and file manifests. */
export async function storedFiles(backupDir: string): Promise<SampleFile[]> {
  const out: SampleFile[] = [];
  for (const e of await listBackups(backupDir)) {
    if (!e.sidecar || !e.sidecarPath || e.type === 'full') continue;
    const dir = path.relative(backupDir, path.dirname(e.sidecarPath));
    for (const p of artifactFiles(e.sidecar)) out.push({ rel: path.join(dir, p.file), size: p.size, checksum: p.checksum, type: e.type, id: e.id });
    const m = e.sidecar.manifest;
    if (m) out.push({ rel: path.join(dir, m.file), size: m.size, checksum: m.checksum, type: e.type, id: e.id });
  }
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

async function readState(backupDir: string): Promise<SampleState> {
  const text = await fsp.readFile(path.join(backupDir, SAMPLE_STATE_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return { format: 1, scopes: {} };
  try {
    const parsed = v.safeParse(StateSchema, JSON.parse(text));
    // a damaged state costs coverage already reached, nothing else: start over
    if (parsed.success) return parsed.output;
  } catch {}
  return { format: 1, scopes: {} };
}

export interface SamplePlan {
  scope: string;
  percent: number;
  /** what this run reads */
  chosen: SampleFile[];
  totalBytes: number;
  totalFiles: number;
  /** a new cycle starts with this run (everything had been read, or nothing was yet) */
  newCycle: boolean;
  /** for commit(): the scope as it stood */
  state: SampleState;
  files: SampleFile[];
}

/** The files this run reads: those not read in the current cycle, oldest backup first, until PCT % of the bytes. */
export async function planSample(backupDir: string, scope: string, files: SampleFile[], percent: number, now = new Date()): Promise<SamplePlan> {
  const state = await readState(backupDir);
  let s: Scope | undefined = state.scopes[scope];
  const isCovered = (f: SampleFile) => s?.covered[f.rel] === f.checksum;
  let newCycle = !s || files.every(isCovered);
  if (newCycle) {
    s = { cycle_started_at: now.toISOString(), runs: 0, covered: {} };
    state.scopes[scope] = s;
  }
  const totalBytes = files.reduce((n, f) => n + f.size, 0);
  const budget = Math.ceil((totalBytes * percent) / 100);
  const chosen: SampleFile[] = [];
  let bytes = 0;
  // oldest first (by the backup's id, then path): files that keep arriving (a database backup every six
  // hours sorts before storage/) cannot starve an older archive of its read
  const order = files.filter((f) => !isCovered(f)).sort((a, b) => compareIds(a.id, b.id) || (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  for (const f of order) {
    // at least one file, and whole files: a run may read a little more than its share, never less
    if (chosen.length && bytes >= budget) break;
    chosen.push(f);
    bytes += f.size;
  }
  newCycle ||= s!.runs === 0;
  return { scope, percent, chosen, totalBytes, totalFiles: files.length, newCycle, state, files };
}

export interface Coverage {
  /** percent of the stored bytes read in the current cycle, this run included */
  coverage_pct: number;
  covered_bytes: number;
  total_bytes: number;
  /** runs in the current cycle, this one included */
  runs_in_cycle: number;
  cycle_started_at: string;
  /** runs a full cycle takes at this percentage */
  runs_per_cycle: number;
}

/** Records what was read (and found good) and writes the state atomically. */
export async function commitSample(backupDir: string, plan: SamplePlan, good: SampleFile[]): Promise<Coverage> {
  const s = plan.state.scopes[plan.scope];
  s.runs++;
  const present = new Map(plan.files.map((f) => [f.rel, f.checksum]));
  // files rotated away (or rewritten) since drop out of the cycle
  for (const rel of Object.keys(s.covered)) if (present.get(rel) !== s.covered[rel]) delete s.covered[rel];
  for (const f of good) s.covered[f.rel] = f.checksum;
  await writeFileAtomic(path.join(backupDir, SAMPLE_STATE_FILE), `${JSON.stringify(plan.state, null, 2)}\n`);
  const covered = plan.files.reduce((n, f) => n + (s.covered[f.rel] === f.checksum ? f.size : 0), 0);
  return {
    coverage_pct: plan.totalBytes ? Math.floor((covered / plan.totalBytes) * 10000) / 100 : 100,
    covered_bytes: covered,
    total_bytes: plan.totalBytes,
    runs_in_cycle: s.runs,
    cycle_started_at: s.cycle_started_at,
    runs_per_cycle: Math.ceil(100 / plan.percent),
  };
}

/**
 * The next turn of a round of `k` (0 … k-1), counted in the state file: the drill restores the tree's
 * k-th files from this offset, so k drills restore every file whatever the stored files' cycle does.
 */
export async function nextRound(backupDir: string, scope: string, k: number): Promise<number> {
  const state = await readState(backupDir);
  const turn = (state.rounds?.[scope] ?? 0) % k;
  state.rounds = { ...(state.rounds ?? {}), [scope]: (turn + 1) % k };
  await writeFileAtomic(path.join(backupDir, SAMPLE_STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  return turn;
}

export interface SampledFileResult {
  file: string;
  type: BackupType;
  id: string;
  size: number;
  ok: boolean;
  problem?: string;
}

export interface SampledVerifyReport {
  ok: boolean;
  sample_pct: number;
  files_read: number;
  bytes_read: number;
  results: SampledFileResult[];
  coverage: Coverage;
}

/**
 * `verify --sample PCT`: this run's share of the stored files hashed against their sidecars. A file that
 * fails stays uncovered (it is read again next run) and fails the run.
 */
export async function verifySample(
  backupDir: string,
  percent: number,
  opts: { signal?: AbortSignal; onFile?: (f: SampleFile, done: number, total: number) => void } = {},
): Promise<SampledVerifyReport> {
  const files = await storedFiles(backupDir);
  const plan = await planSample(backupDir, 'verify', files, percent);
  const results: SampledFileResult[] = [];
  const good: SampleFile[] = [];
  let bytes = 0;
  for (const f of plan.chosen) {
    opts.signal?.throwIfAborted();
    opts.onFile?.(f, results.length, plan.chosen.length);
    const got = await sha256File(path.join(backupDir, f.rel)).catch((err: NodeJS.ErrnoException) => ({
      error: err.code === 'ENOENT' ? 'missing' : `cannot be read: ${err.code ?? err.message}`,
    }));
    let problem: string | undefined;
    if ('error' in got) problem = `${f.rel} is ${got.error}`;
    else {
      bytes += got.size;
      if (got.size !== f.size) problem = `${f.rel} is ${got.size} bytes, metadata says ${f.size}`;
      else if (f.checksum && got.checksum !== f.checksum) problem = `${f.rel}: checksum mismatch`;
    }
    results.push({ file: f.rel, type: f.type, id: f.id, size: f.size, ok: !problem, problem });
    if (!problem) good.push(f);
  }
  const coverage = await commitSample(backupDir, plan, good);
  return { ok: results.every((r) => r.ok), sample_pct: percent, files_read: results.length, bytes_read: bytes, results, coverage };
}
