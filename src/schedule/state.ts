import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ensureDir, writeFileAtomic } from '../fsutil.js';

/**
 * What the scheduler remembers across restarts: for each job, the scheduled time it last handled.
 * Without it a restart a minute after the 02:00 backup would run that backup again; with it only a
 * run that was really missed (or aborted by a stop) is caught up within the grace time.
 */
export const SCHEDULE_STATE_FILE = 'schedule-state.json';

export interface JobState {
  last_scheduled: string; // ISO time of the scheduled run handled last
  last_exit_code: number | null;
  last_finished: string | null;
  /** set when the entry is the baseline of the scheduler's first start, not a run */
  first_start?: string;
}

export type ScheduleState = Record<string, JobState>;

export interface StateStore {
  load(): Promise<ScheduleState>;
  save(state: ScheduleState): Promise<void>;
}

export function fileStateStore(backupDir: string): StateStore {
  const file = path.join(backupDir, SCHEDULE_STATE_FILE);
  return {
    async load() {
      try {
        const data = JSON.parse(await fsp.readFile(file, 'utf8')) as { jobs?: ScheduleState };
        return data.jobs && typeof data.jobs === 'object' ? data.jobs : {};
      } catch {
        // missing or unreadable: behave as on a first start
        return {};
      }
    },
    async save(state) {
      await ensureDir(backupDir);
      await writeFileAtomic(file, `${JSON.stringify({ format: 1, jobs: state }, null, 2)}\n`);
    },
  };
}

export function memoryStateStore(initial: ScheduleState = {}): StateStore & { state: ScheduleState } {
  const store = {
    state: { ...initial },
    async load() {
      return { ...store.state };
    },
    async save(s: ScheduleState) {
      store.state = { ...s };
    },
  };
  return store;
}
