import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { BackupEntry } from './judge.js';
import { type SidecarMemo, listBackups } from './local-store.js';
import { activeHolder } from './lock.js';
import { TYPE_DIR } from './names.js';
import { BACKUP_TYPES } from './sidecar.js';

export interface CatalogSnapshot {
  /** every backup, judged, newest first (what listBackups returns) */
  entries: BackupEntry[];
  /** when the listing started (ms since the epoch) */
  readAt: number;
  /** bumped by every new listing: values derived from a snapshot can be cached by it */
  generation: number;
}

/**
 * One shared listing of a backup directory for a long-running reader (serve): every request used to
 * read every sidecar again, so 200 status pages at once were 200 full listings racing for the disk
 * and the heap. Here concurrent callers share one listing in flight, and a listing is reused until a
 * type directory or the lock holder changes (a backup written or rotated, a run starting or ending:
 * sidecars are renamed into place, so the directory's mtime moves), until `invalidate()` (this process
 * wrote), or for at most `ttlMs` (a file changed in place: damage, a hand-edited sidecar). A new
 * listing stats every file but re-reads only the sidecars whose file changed.
 *
 * Never for an operation that writes (create, rotate, restore): those list the directory themselves.
 */
export class CatalogCache {
  private snapshot?: CatalogSnapshot & { signature: string; epoch: number };
  private inflight?: { signature: string; epoch: number; promise: Promise<CatalogSnapshot> };
  private memo: SidecarMemo = new Map();
  private generation = 0;
  /** bumped by `invalidate`: a listing from an earlier epoch is not served, nor joined */
  private epoch = 0;

  constructor(
    readonly backupDir: string,
    private readonly ttlMs = 1_000,
  ) {}

  private signing?: Promise<string>;

  /**
   * What a listing depends on that can be checked without one: the type directories and the lock holder.
   * Requests that come while a check runs share it (the lock check opens a SQLite file: 200 requests at
   * once would each pay for it); a change made during a check is seen by the next one.
   */
  private signature(): Promise<string> {
    if (!this.signing) {
      const p = this.sign();
      this.signing = p;
      const clear = () => {
        if (this.signing === p) this.signing = undefined;
      };
      p.then(clear, clear);
    }
    return this.signing;
  }

  private async sign(): Promise<string> {
    const dirs = await Promise.all(
      BACKUP_TYPES.map((t) =>
        fsp.stat(path.join(this.backupDir, TYPE_DIR[t]), { bigint: true }).then(
          (s) => `${s.ino}:${s.mtimeNs}`,
          () => '-',
        ),
      ),
    );
    const holder = activeHolder(this.backupDir);
    return `${dirs.join('|')}|${holder ? `${holder.pid}@${holder.started_at}` : ''}`;
  }

  async get(now = Date.now()): Promise<CatalogSnapshot> {
    // the epoch when asked: a caller that came before an invalidate() may get the listing before it
    const epoch = this.epoch;
    const signature = await this.signature();
    const s = this.snapshot;
    if (s && s.epoch === epoch && s.signature === signature && now - s.readAt < this.ttlMs) return s;
    // single flight: whoever comes while a listing of the same state runs waits for that one
    const f = this.inflight;
    if (f && f.epoch === epoch && f.signature === signature) return f.promise;
    const flight = { signature, epoch, promise: this.read(signature, epoch) };
    this.inflight = flight;
    const clear = () => {
      if (this.inflight === flight) this.inflight = undefined;
    };
    flight.promise.then(clear, clear);
    return flight.promise;
  }

  /** This process changed the directory (a job ended): the next `get` lists again. */
  invalidate(): void {
    this.epoch++;
  }

  private async read(signature: string, epoch: number): Promise<CatalogSnapshot> {
    const readAt = Date.now();
    const entries = await listBackups(this.backupDir, { memo: this.memo });
    const snap = { entries, readAt, generation: ++this.generation, signature, epoch };
    if (!this.snapshot || this.snapshot.readAt <= readAt) this.snapshot = snap;
    return snap;
  }
}
