import { formatBytes } from '../fsutil.js';
import { formatAge } from '../schedule/duration.js';

/** Plain formatting for human output; no terminal libraries here, so --help stays light. */
export const bytes = formatBytes;

export function duration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - m * 60)} s`;
}

/** The one age format of every command ("2d 3h", "26h 0m", "45m 10s", "12s"): check, stats, schedule. */
export function age(seconds: number): string {
  return formatAge(seconds * 1000);
}
