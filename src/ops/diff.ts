import { compareRecords, ManifestCursor, type ManifestRecord } from '../archive/manifest.js';
import { showName } from '../archive/bytenames.js';
import type { Identity } from '../crypto/age-keys.js';
import { manifestRecords, shownPath, storageWithManifest } from './file-manifest.js';

export interface DiffResult {
  from: string;
  to: string;
  added: string[];
  removed: string[];
  /** what differs: type, size, content, mode, owner, mtime, target */
  changed: { path: string; what: string[] }[];
}

function differences(a: ManifestRecord, b: ManifestRecord): string[] {
  const what: string[] = [];
  if (a.t !== b.t) return ['type'];
  if (a.s !== b.s) what.push('size');
  if (a.h !== b.h) what.push('content');
  if (a.l !== b.l) what.push('target');
  if (a.m !== b.m) what.push('mode');
  if (a.u !== b.u || a.g !== b.g) what.push('owner');
  if (a.t !== 'd' && a.mt !== b.mt) what.push('mtime');
  return what;
}

/** Added, removed and changed paths between two storage backups: a merge of their manifests. */
export async function diffBackups(backupDir: string, ref1: string, ref2: string, options: { identities?: Identity[] } = {}): Promise<DiffResult> {
  const e1 = await storageWithManifest(backupDir, ref1);
  const e2 = await storageWithManifest(backupDir, ref2);
  const c1 = new ManifestCursor(manifestRecords(backupDir, e1, options.identities));
  const c2 = new ManifestCursor(manifestRecords(backupDir, e2, options.identities));
  const out: DiffResult = { from: e1.id, to: e2.id, added: [], removed: [], changed: [] };
  // a type change moves a path between groups (a directory heads its own): seen as removed + added
  const show = (e: typeof e1, r: ManifestRecord) => showName(shownPath(e, r.path));
  try {
    for (;;) {
      const a = await c1.peek();
      const b = await c2.peek();
      if (!a && !b) break;
      const c = !a ? 1 : !b ? -1 : compareRecords(a, b);
      if (c < 0) {
        out.removed.push(show(e1, a!));
        await c1.take();
      } else if (c > 0) {
        out.added.push(show(e2, b!));
        await c2.take();
      } else {
        const what = differences(a!, b!);
        if (what.length) out.changed.push({ path: show(e2, b!), what });
        await c1.take();
        await c2.take();
      }
    }
  } finally {
    await c1.close();
    await c2.close();
  }
  return out;
}
