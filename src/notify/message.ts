import { formatBytes, formatDuration } from '../human.js';
import type { RunResult } from './types.js';

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
