import { existsSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { BackupError } from '../../errors.js';
import type { RestorePlan } from '../../ops/restore.js';
import { commandIdentities, identityOption, passphraseNeeded } from '../encryption-options.js';
import { action } from '../run.js';
import { remotesConfigOption, waitOption } from '../options.js';
import { countOf, formatBytes, formatDuration } from '../../human.js';
import { nameArg } from '../name-args.js';
import { reportHook } from '../hook-lines.js';
import { terminalText } from '../ui.js';

async function ask(question: string): Promise<boolean> {
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** What "latest" picked when it is not a full backup: the operator must not have to guess. */
function latestNote(ref: string, type: string, id: string): string | undefined {
  return ref === 'latest' && type !== 'full'
    ? `"latest" is the ${type} backup ${id}: there is no full backup, so the newest backup of any type was taken`
    : undefined;
}

function describe(plan: RestorePlan, ref: string): string[] {
  const lines = [`restore ${plan.type} backup ${plan.id}${plan.verified ? ' (verified)' : ' (NOT verified)'}:`];
  const note = latestNote(ref, plan.type, plan.id);
  if (note) lines.unshift(`note: ${note}`);
  // only what exists is copied aside: a --target that is new gets a fresh copy and nothing else
  if (plan.database) {
    const aside = existsSync(plan.database.to) ? 'the current one is copied aside first' : 'a new file: nothing there now';
    lines.push(`  database ${plan.database.backupId} -> ${plan.database.to}  (${aside})`);
  }
  if (plan.storage) {
    const kept = existsSync(plan.storage.to)
      ? `the current tree is kept as ${plan.storage.keptAs ?? `${plan.storage.to}.pre-restore-${plan.id}`}`
      : 'a new directory: nothing there now';
    lines.push(`  storage  ${plan.storage.backupId} -> ${plan.storage.to}  (${kept})`);
  }
  return lines;
}

export function register(program: Command): void {
  const command = program
    .command('restore')
    .argument('[backup]', 'backup id, "latest", or a path to a backup file or sidecar (not with --at)')
    .description('restore a database, storage or full backup without losing the current data')
    .option('--target <dir>', 'restore into this directory instead of the live database and storage paths')
    .option('--no-verify', 'skip verification before restoring (not recommended)')
    .option('--target-db <name>', 'PostgreSQL: restore the database beside the live one under this name (no swap)')
    .option('--database <name...>', 'PostgreSQL: restore only these databases of the backup')
    .option('--globals', 'PostgreSQL: also restore roles and tablespaces (pg_dumpall --globals-only)')
    .option('-y, --yes', 'do not ask for confirmation (required when not on a terminal)')
    .option(
      '--include <path>',
      'storage: restore only this path of the tree, relative to the storage directory (repeatable; needs --target)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--volume <name>', 'restore this Docker volume from <backup-dir>/volumes/<name>: its stop-labelled containers are stopped and started again')
    .addOption(new Option('--only <half>', 'restore one half of a full backup by id (--include implies storage)').choices(['database', 'storage']))
    .option(
      '--at <moment>',
      'database: restore the newest state at or before this moment: "2026-12-05 05:59:30" (UTC), an ISO time, or -10m (see docs/point-in-time.md)',
    )
    .option('--from <remote>', 'download the backup from this remote first (name or URL), verify it, then restore')
    .addOption(remotesConfigOption())
    .addOption(waitOption())
    .addHelpText(
      'after',
      `
The current database is copied aside (<db>.pre-restore-<id>) and the backup is written into the live
file through SQLite's backup API, so an application holding it open stays consistent. Storage is
unpacked beside the live directory, checked, then swapped in; the old tree is kept as
<storage>.pre-restore-<id>. Remove those copies once the application runs well.

Examples:
  vertex-backup restore latest                          # asks before changing anything
  vertex-backup restore 20240101_120000 --yes           # from a script
  vertex-backup restore 20240101_120000 --target /tmp/restore-check --yes
  vertex-backup restore 20240101_120000 --from yandex --yes      # from the offsite copy
  vertex-backup restore 20240101_120000 --target /tmp/r --include images/2024 --yes   # part of the tree
  vertex-backup restore 20240101_120000 --only database --yes   # the database half of a full backup
  vertex-backup restore --at "2026-12-05 05:59:30" --yes   # the database as it was then (page deltas)
  vertex-backup restore --at -10m --yes                 # ten minutes ago
  vertex-backup restore latest --identity ~/backup-key.txt --yes  # an encrypted backup
  vertex-backup restore latest --volume pgdata --yes    # a Docker volume (DOCKER_HOST)
  vertex-backup restore latest --volume pgdata --target /tmp/r --yes   # beside it, without Docker`,
    );
  identityOption(command).action(
    action('restore', async (ctx, cmd) => {
      const [ref] = cmd.args as string[];
      const o = cmd.opts() as {
        target?: string;
        verify: boolean;
        yes?: boolean;
        wait: string;
        from?: string;
        include?: string[];
        targetDb?: string;
        database?: string[];
        globals?: boolean;
        volume?: string;
        only?: 'database' | 'storage';
        at?: string;
      };
      if (o.at && ref)
        throw new BackupError('USAGE', '--at picks the backup itself: give a moment or a backup, not both', {
          argument: true,
          hint: 'vertex-backup restore --at "2026-12-05 05:59:30" --yes',
        });
      if (!o.at && !ref)
        throw new BackupError('USAGE', 'restore needs a backup (an id, "latest" or a path) or --at MOMENT', {
          argument: true,
          hint: 'vertex-backup list shows the backups and the restorable window of the database',
        });
      if (o.at && (o.volume || o.include?.length || o.only === 'storage'))
        throw new BackupError('USAGE', '--at restores the database only', {
          argument: true,
          hint: 'leave out --volume, --include and --only storage',
        });
      const at = o.at ? (await import('../../ops/pit.js')).parseMoment(o.at) : undefined;
      // a partial tree swapped in for the live one would look like lost files: only beside it
      if (o.include?.length && !o.target)
        throw new BackupError('USAGE', '--include restores part of the tree, so it needs --target DIR', {
          hint: 'add --target DIR (the live storage directory is not replaced by a partial tree)',
        });
      const interactive = process.stdin.isTTY === true && process.stderr.isTTY === true;
      if (!o.yes && !interactive) {
        throw new BackupError('USAGE', 'restore replaces current data and there is no terminal to confirm on', {
          hint: 'pass --yes to restore without asking',
        });
      }
      const hooksMod = await import('../../ops/hooks.js');
      const hooks = hooksMod.resolveHooks(ctx.cfg.file, ctx.cfg.env);
      const hookRuns: import('../../ops/hooks.js').HookRun[] = [];
      const onRun = (r: import('../../ops/hooks.js').HookRun) => {
        hookRuns.push(r);
        reportHook(ctx.ui, hooksMod.describeRun(r), r);
      };
      const hookCtx = (plan: RestorePlan): import('../../ops/hooks.js').HookContext => ({
        operation: 'restore',
        type: plan.type,
        id: plan.id,
        backupDir: ctx.cfg.backupDir,
        paths: [plan.database?.to, plan.storage?.to].filter((p): p is string => !!p),
      });
      // set once the restore is confirmed: from then on the afterRestore hooks run whatever happens
      let started: RestorePlan | undefined;
      const { restoreBackup } = await import('../../ops/restore.js');
      const identities = await commandIdentities(
        ctx,
        cmd,
        !o.from &&
          ref !== undefined &&
          (await passphraseNeeded(o.volume ? (await import('../../ops/volumes.js')).volumeBackupDir(ctx.cfg.backupDir, o.volume) : ctx.cfg.backupDir, ref)),
      );
      const options: import('../../ops/restore.js').RestoreOptions = {
        target: o.target,
        include: o.include?.map(nameArg),
        only: o.only,
        verify: o.verify,
        sources: { targetDb: o.targetDb, databases: o.database, globals: !!o.globals },
        identities,
        signal: ctx.signal,
        lockWaitMs: Number(o.wait) * 1000 || 0,
        onProgress: (p) => ctx.progress.event(p),
        beforeChange: async (plan) => {
          started = plan;
          await hooksMod.runHooks(hooks.beforeRestore, hooksMod.hookEnv(ctx.cfg.env, 'beforeRestore', hookCtx(plan)), {
            stopOnFailure: true,
            signal: ctx.signal,
            onRun,
          });
        },
        confirm: o.yes
          ? undefined
          : async (plan) => {
              // no spinner (nor its timer) over the question
              ctx.progress.stop();
              await ctx.ui.settle();
              for (const l of describe(plan, ref)) process.stderr.write(`${terminalText(l, false)}\n`);
              return ask('Proceed? [y/N] ');
            },
      };
      let result!: import('../../ops/restore.js').RestoreResult;
      let failure: unknown;
      try {
        result = await restoreWith(o.from);
      } catch (err) {
        failure = err;
      }
      let failedAfter: import('../../ops/hooks.js').HookRun[] = [];
      if (started) {
        const env = hooksMod.hookEnv(ctx.cfg.env, 'afterRestore', {
          ...hookCtx(started),
          result: failure === undefined ? 'ok' : 'failed',
          exitCode: failure === undefined ? 0 : failure instanceof BackupError ? failure.exitCode : 1,
          error: failure === undefined ? undefined : ((failure as Error)?.message ?? String(failure)),
        });
        failedAfter = (await hooksMod.runHooks(hooks.afterRestore, env, { onRun })).filter((r) => !r.ok);
      }
      if (failure !== undefined) throw failure;
      async function restoreWith(from: string | undefined): Promise<import('../../ops/restore.js').RestoreResult> {
        let result: import('../../ops/restore.js').RestoreResult;
        if (from) {
          const { loadRemotes, openRemoteByName, transferProgress } = await import('./remote.js');
          const { restoreFromRemote } = await import('../../ops/restore.js');
          const remote = await openRemoteByName(ctx, await loadRemotes(ctx, cmd), from);
          try {
            const transfer = { onEvent: transferProgress(ctx, from) };
            // a moment: picked from the remote's listing, its chain downloaded, the state rebuilt and checked
            // (ops/pit.ts); a page delta by its id is rebuilt the same way by restoreFromRemote
            if (at) {
              const { restoreDatabaseState } = await import('../../ops/pit.js');
              result = await restoreDatabaseState(ctx.cfg, { at }, { ...options, from: { remote, transfer } });
            } else result = await restoreFromRemote(ctx.cfg, remote, ref, { ...options, transfer });
          } finally {
            await remote.close();
          }
        } else if (o.volume) {
          const { restoreVolume } = await import('../../ops/volume-restore.js');
          const { resolveVolumeSettings } = await import('../../ops/volumes.js');
          const s = resolveVolumeSettings(ctx.cfg, o.volume);
          result = await restoreVolume(ctx.cfg, o.volume, ref, { ...options, dockerHost: s?.host, stopTimeoutS: s?.stopTimeoutS });
        } else if (at || (await (await import('../../ops/pit.js')).namesPageDelta(ctx.cfg.backupDir, ref))) {
          const { restoreDatabaseState } = await import('../../ops/pit.js');
          result = await restoreDatabaseState(ctx.cfg, at ? { at } : { id: ref }, options);
        } else {
          result = await restoreBackup(ctx.cfg, ref, options);
        }
        return result;
      }
      if (result.cancelled) return { json: result, exitCode: 1, human: (ui) => ui.out('restore cancelled: nothing was changed') };
      return {
        json: { ...result, hooks: hookRuns.length ? hookRuns : undefined },
        exitCode: failedAfter.length ? 1 : 0,
        summary: `restored ${result.type} backup ${result.id} in ${formatDuration(result.durationMs)}${failedAfter.map((r) => `; ${hooksMod.describeRun(r)}`).join('')}`,
        log: {
          id: result.id,
          type: result.type,
          target: o.target,
          verified: result.verified,
          database: result.database,
          databases: result.sources,
          storage: result.storage && { ...result.storage, warnings: undefined },
          hooks: hooksMod.hookLog(hookRuns),
        },
        human: (ui) => {
          const note = latestNote(ref, result.type, result.id);
          if (note) ui.warn(note);
          ui.out(
            `${ui.c.green('✔')} restored ${result.type} backup ${ui.c.bold(result.id)} in ${formatDuration(result.durationMs)}${result.verified ? '' : ui.c.yellow(' (not verified)')}`,
          );
          const state = (result as Partial<import('../../ops/pit.js').PointInTimeResult>).state;
          if (state)
            ui.out(
              `  the database as it was at ${state.at.toISOString()}${'deltas' in result && result.deltas ? ` (level 0 + ${countOf(result.deltas as number, 'delta')})` : ''}`,
            );
          if (result.database) {
            ui.out(`  database -> ${result.database.to} (integrity_check: ${result.database.integrity})`);
            if (result.database.savedCurrentAs) ui.out(`             previous database saved as ${result.database.savedCurrentAs}`);
          }
          if (result.storage) {
            ui.out(`  storage  -> ${result.storage.to} (${countOf(result.storage.entries, 'entry', 'entries')}, ${formatBytes(result.storage.bytes)})`);
            if (result.storage.previousKeptAs) ui.out(`             previous tree kept as ${result.storage.previousKeptAs}`);
            for (const w of result.storage.warnings) ui.warn(w);
          }
          for (const d of result.sources ?? []) {
            ui.out(`  database ${d.name} -> ${d.restoredAs}${d.keptAs ? ` (previous kept as ${d.keptAs})` : ''}`);
            for (const n of d.notes) ui.out(ui.c.dim(`             ${n}`));
          }
          for (const w of result.warnings ?? []) ui.warn(w);
          if (result.healed) ui.warn(result.healed);
          if (result.database?.savedCurrentAs || result.storage?.previousKeptAs) ui.out(ui.c.dim('  remove the kept copies once the application runs well'));
        },
      };
    }),
  );
}
