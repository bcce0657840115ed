import * as fsp from 'node:fs/promises';
import type { BackupType } from '../catalog/sidecar.js';
import type { Config } from '../config.js';
import { excludeMatcher, unmatchedHint } from '../archive/exclude.js';
import { treeSize } from '../archive/tree.js';
import { archiveEstimate, checkInputs } from './create.js';

export interface CreatePlan {
  dryRun: true;
  type: BackupType;
  database?: { path: string; bytes: number };
  storage?: { path: string; files: number; bytes: number; estimatedSize: number; compression: string };
  /** files and bytes that would be read, both halves together */
  files: number;
  bytes: number;
  /** about how much the backup would add to the backup directory */
  estimatedSize: number;
  excludes: { pattern: string; matched: number }[];
  warnings: string[];
}

/**
 * `create --dry-run`: the inputs are checked and the sources walked exactly as a backup would walk
 * them, and nothing is written (no lock, no backup directory).
 */
export async function planCreate(cfg: Config, type: BackupType): Promise<CreatePlan> {
  await checkInputs(cfg, type);
  const plan: CreatePlan = { dryRun: true, type, files: 0, bytes: 0, estimatedSize: 0, excludes: [], warnings: [] };
  if (type !== 'storage') {
    let bytes = 0;
    for (const f of [cfg.dbPath, `${cfg.dbPath}-wal`]) bytes += (await fsp.stat(f).catch(() => undefined))?.size ?? 0;
    plan.database = { path: cfg.dbPath, bytes };
    plan.files += 1;
    plan.bytes += bytes;
    plan.estimatedSize += bytes;
  }
  if (type !== 'database') {
    const matcher = excludeMatcher(cfg.exclude);
    const tree = await treeSize(cfg.storagePath, matcher, [cfg.backupDir]);
    const estimatedSize = Math.round(archiveEstimate(tree, cfg.compression));
    plan.storage = { path: cfg.storagePath, files: tree.files, bytes: tree.bytes, estimatedSize, compression: cfg.compression };
    plan.files += tree.files;
    plan.bytes += tree.bytes;
    plan.estimatedSize += estimatedSize;
    plan.excludes = matcher.counts.map((c) => ({ ...c }));
    for (const c of plan.excludes) {
      if (c.matched) continue;
      const hint = unmatchedHint(c.pattern, cfg.storagePath);
      plan.warnings.push(`exclude '${c.pattern}' matched nothing${hint ? ` (${hint})` : ''}`);
    }
  }
  return plan;
}
