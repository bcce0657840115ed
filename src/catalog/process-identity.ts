import { readFileSync } from 'node:fs';

/**
 * Which process a recorded pid was. A pid alone is reused: after a power cut the next boot hands the
 * dead run's pid to whatever starts early (a daemon that lives for months), and "that pid is alive"
 * would call the dead run alive. The boot id and the process's start time (clock ticks since boot, from
 * /proc) tell them apart. Elsewhere (no /proc) both are undefined and the pid is all there is.
 */
export interface ProcessIdentity {
  boot_id?: string;
  start_ticks?: number;
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function startTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name (field 2) may hold spaces and ')': fields are counted after its last ')'
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}

export function ownIdentity(): ProcessIdentity {
  return { boot_id: bootId(), start_ticks: startTicks(process.pid) };
}

/** False only when the process is known to be gone: another boot, no such pid, or another process under it. */
export function stillRunning(pid: number, recorded: ProcessIdentity): boolean {
  const boot = bootId();
  if (recorded.boot_id && boot && recorded.boot_id !== boot) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (recorded.start_ticks === undefined) return true;
  const now = startTicks(pid);
  return now === undefined || now === recorded.start_ticks;
}
