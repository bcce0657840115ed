/**
 * Named points where the fault suite stops a run to kill it there (test/faults/restore-kill.test.ts):
 * with VERTEX_BACKUP_FAULT_POINT=<name> the process stops itself (SIGSTOP) on reaching that point, and
 * the test sends SIGKILL. A kill at a chosen instant cannot be timed from outside: a rename takes
 * microseconds. Unset (always, outside the suite) this does nothing.
 */
export function faultPoint(name: string): void {
  if (process.env.VERTEX_BACKUP_FAULT_POINT === name) process.kill(process.pid, 'SIGSTOP');
}
