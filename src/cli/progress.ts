import type { ProgressEvent } from '../ops/progress.js';
import { countOf, formatBytes, formatDuration } from '../human.js';
import type { Ui } from './ui.js';

export const DEFAULT_PROGRESS_INTERVAL_S = 30;

/** What one line of progress says; `unit` pages for the database copy, bytes otherwise. */
export interface ProgressFigures {
  done: number;
  total?: number;
  files?: number;
  totalFiles?: number;
  unit?: 'bytes' | 'pages';
  /** of `done`, what the compressor holds and has not compressed: still to do, not done */
  backlog?: number;
}

/**
 * Turns the core's progress callbacks into what an operator can read: done/total, percent, rate and
 * ETA. On a terminal it drives the spinner; elsewhere (journal, cron mail, a pipe) it prints one plain
 * line every `intervalMs`, nothing faster; with --quiet or --json nothing at all.
 */
export class ProgressView {
  private label = '';
  private t0 = 0;
  private figures?: ProgressFigures;
  private timer?: NodeJS.Timeout;
  private readonly plain: boolean;

  constructor(
    private readonly ui: Ui,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.plain = !ui.interactive && !ui.opts.json && !ui.opts.quiet && intervalMs > 0;
  }

  update(label: string, f: ProgressFigures): void {
    if (!this.ui.interactive && !this.plain) return;
    if (label !== this.label) {
      this.label = label;
      this.t0 = this.now();
    }
    this.figures = f;
    if (this.ui.interactive) this.ui.progress(this.text());
    // a timer, not the events, paces the output: a compressor that reads everything and then works for
    // a minute still shows that time passes, and the journal never gets more than a line per interval
    this.timer ??= setInterval(() => this.tick(), this.ui.interactive ? 1000 : this.intervalMs).unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (!this.figures) return;
    if (this.ui.interactive) this.ui.progress(this.text());
    else this.ui.info(`progress: ${this.text()}`);
  }

  private text(): string {
    const elapsed = this.now() - this.t0;
    const f = this.figures!;
    const finishing = f.total !== undefined && f.total > 0 && f.done - (f.backlog ?? 0) >= f.total ? ', finishing' : '';
    return `${this.label}: ${formatProgress(f, elapsed)}${finishing}, ${formatDuration(elapsed - (elapsed % 1000))} elapsed`;
  }

  /** The adapter for ProgressFn events of create, verify and restore. */
  event(e: ProgressEvent): void {
    if (e.bytes === undefined && e.files === undefined) return;
    const what = e.phase === 'verify' ? 'verifying' : e.phase === 'restore' ? 'restoring' : e.phase;
    this.update(e.subject ? `${what} ${e.subject}` : what, {
      done: e.bytes ?? 0,
      total: e.totalBytes,
      files: e.files,
      totalFiles: e.totalFiles,
      unit: e.phase === 'database' ? 'pages' : 'bytes',
      backlog: e.backlogBytes,
    });
  }
}

export function formatProgress(figures: ProgressFigures, elapsedMs: number): string {
  // bytes read but still in the compressor are not done: percent, rate and ETA count what is compressed
  const backlog = Math.min(figures.backlog ?? 0, figures.done);
  const f = { ...figures, done: figures.done - backlog };
  const amount = (n: number) => (f.unit === 'pages' ? `${n}` : formatBytes(n));
  const parts: string[] = [];
  const total = f.total !== undefined && f.total > 0 ? f.total : undefined;
  parts.push(
    total !== undefined
      ? `${amount(f.done)} / ${amount(total)}${f.unit === 'pages' ? ' pages' : ''} (${Math.min(100, Math.floor((f.done / total) * 100))}%)`
      : `${amount(f.done)}${f.unit === 'pages' ? ' pages' : ''}`,
  );
  if (f.files !== undefined) parts.push(f.totalFiles !== undefined ? `${f.files}/${countOf(f.totalFiles, 'file')}` : countOf(f.files, 'file'));
  if (elapsedMs >= 1000 && f.done > 0 && (total === undefined || f.done < total)) {
    const rate = f.done / (elapsedMs / 1000);
    if (f.unit !== 'pages') parts.push(`${formatBytes(Math.round(rate))}/s`);
    if (total !== undefined && total > f.done) parts.push(`ETA ${formatDuration(Math.round(((total - f.done) / rate) * 1000))}`);
  }
  if (backlog > 0) parts.push(`${formatBytes(backlog)} read, not yet compressed`);
  return parts.join(', ');
}
