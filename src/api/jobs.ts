import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { BackupError, toBackupError } from '../errors.js';
import type { ProgressEvent } from '../ops/progress.js';
import { errorDocument } from '../results/json.js';

export type JobState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface Job {
  id: string;
  kind: string;
  state: JobState;
  created_at: string;
  finished_at?: string;
  progress?: ProgressEvent;
  /** the same document `--json` prints for the command */
  result?: unknown;
  exit_code?: number;
  error?: unknown;
}

/** What a job's work returns: its document and the exit code the CLI would have given. */
export interface JobOutcome {
  document: unknown;
  exitCode: number;
}

interface Running {
  job: Job;
  controller: AbortController;
}

/**
 * Long operations run as jobs: the request gets 202 and the job id at once; `get` gives state and
 * progress, `events` emits `progress` and `done` for the Server-Sent Events streams, `cancel` aborts it
 * (the operation removes its partial files, as on SIGTERM). Finished jobs are kept for the last 100.
 */
export class Jobs extends EventEmitter {
  private jobs = new Map<string, Running>();

  start(kind: string, work: (signal: AbortSignal, onProgress: (p: ProgressEvent) => void) => Promise<JobOutcome>, onEnd?: () => void): Job {
    const job: Job = { id: randomUUID(), kind, state: 'running', created_at: new Date().toISOString() };
    const controller = new AbortController();
    this.jobs.set(job.id, { job, controller });
    this.prune();
    let lastEmit = 0;
    const onProgress = (p: ProgressEvent) => {
      job.progress = p;
      const now = Date.now();
      // at most ten events a second: a fast walk must not flood a slow reader
      if (now - lastEmit >= 100) {
        lastEmit = now;
        this.emit('progress', job);
      }
    };
    this.emit('start', job);
    void (async () => {
      try {
        const out = await work(controller.signal, onProgress);
        job.result = out.document;
        job.exit_code = out.exitCode;
        job.state = controller.signal.aborted ? 'cancelled' : out.exitCode === 0 ? 'succeeded' : 'failed';
      } catch (err) {
        const e = controller.signal.aborted && controller.signal.reason instanceof BackupError ? controller.signal.reason : toBackupError(err);
        job.state = controller.signal.aborted ? 'cancelled' : 'failed';
        job.exit_code = e.exitCode;
        job.error = (errorDocument(e, e.exitCode) as { error: unknown }).error;
      } finally {
        job.finished_at = new Date().toISOString();
        onEnd?.();
        this.emit('done', job);
      }
    })();
    return job;
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id)?.job;
  }

  running(): Job[] {
    return [...this.jobs.values()].filter((r) => r.job.state === 'running').map((r) => r.job);
  }

  cancel(id: string): Job | undefined {
    const r = this.jobs.get(id);
    if (r && r.job.state === 'running') r.controller.abort(new BackupError('FAILED', 'cancelled through the API'));
    return r?.job;
  }

  cancelAll(): void {
    for (const r of this.jobs.values()) if (r.job.state === 'running') r.controller.abort(new BackupError('FAILED', 'the server is stopping'));
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((r) => r.job.state !== 'running');
    for (const r of finished.slice(0, Math.max(0, finished.length - 100))) this.jobs.delete(r.job.id);
  }
}
