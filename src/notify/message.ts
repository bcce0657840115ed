import { formatBytes } from '../fsutil.js';
import type { RunResult } from './types.js';

/** "850 ms", "12.3 s", "3m 12s", "2h 05m": a person reads this on a phone at 02:00. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const total = Math.round(s);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  return h > 0 ? `${h}h ${String(m).padStart(2, '0')}m` : `${m}m ${String(sec).padStart(2, '0')}s`;
}

/**
 * The text sent to a chat: what ran, where, the result, size, duration and, on failure, the reason.
 * Plain text on purpose: Markdown/HTML parse modes would need every error message escaped.
 */
export function formatMessage(result: RunResult, host: string): string {
  const head = result.ok
    ? `✅ vertex-backup on ${host}: ${result.command} succeeded`
    : `❌ vertex-backup on ${host}: ${result.command} FAILED${result.exitCode ? ` (exit ${result.exitCode})` : ''}`;
  const lines = [head];
  // a failed check's summary is its reason: say it once
  if (result.summary && (result.ok || result.summary !== result.error)) lines.push(oneLine(result.summary, 500));
  if (!result.ok) lines.push(`Reason: ${oneLine(result.error || 'unknown error (see the log)', 500)}`);
  const facts: string[] = [];
  if (typeof result.sizeBytes === 'number') facts.push(`Size: ${formatBytes(result.sizeBytes)}`);
  // a negative duration means "not known" (the OnFailure= unit reports a run it did not time)
  if (result.durationMs >= 0) facts.push(`Duration: ${formatDuration(result.durationMs)}`);
  if (facts.length) lines.push(facts.join(', '));
  return lines.join('\n');
}

/** One line, bounded: multi-line errors and long server bodies must not flood a log or a chat. */
export function oneLine(text: string, max = 300): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
