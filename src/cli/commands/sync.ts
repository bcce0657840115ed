import { cliHint } from '../remedies.js';
import { type Command, InvalidArgumentError } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { BackupError } from '../../errors.js';
import type { RemotesConfig } from '../../remote/config.js';
import type { SyncOptions, SyncResult } from '../../ops/sync.js';
import { type Context, action } from '../run.js';
import { remotesConfigOption, typeOption } from '../options.js';
import { countOf, formatBytes, formatDuration } from '../../human.js';
import { loadRemotes, openRemoteByName, selectRemotes, transferProgress } from './remote.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

export interface RemoteSync {
  remote: string;
  ok: boolean;
  result?: SyncResult;
  error?: string;
  hint?: string;
  /** a failed remote: how far behind it is, from what status.json recorded */
  lagSeconds?: number;
  missing?: number;
}

/**
 * The per-remote loop of `sync` and `create --sync`: up to `parallel` remotes at once (default: as many
 * as there are, up to 3), each with its own encryption settings and retries; a remote that fails does not
 * stop the others (`onFailure` says so as it happens).
 */
export async function syncEach(
  ctx: Context,
  remotes: RemotesConfig,
  names: string[],
  options: SyncOptions & { refresh?: boolean },
  onFailure?: (name: string, e: BackupError) => void,
  parallel?: number,
): Promise<RemoteSync[]> {
  const { syncRemote } = await import('../../ops/sync.js');
  const { remoteRecipients } = await import('../../offsite/remote-encryption.js');
  const one = async (name: string): Promise<RemoteSync> => {
    try {
      // opened only when status.json does not already say the remote holds everything
      const result = await syncRemote(() => openRemoteByName(ctx, remotes, name), { name, url: remoteUrl(remotes, name) }, ctx.cfg.backupDir, {
        ...options,
        signal: ctx.signal,
        onEvent: transferProgress(ctx, name),
        encryptTo: remoteRecipients(remotes, name),
      });
      return { remote: name, ok: true, result };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      const e = err instanceof BackupError ? err : new BackupError('FAILED', (err as Error).message);
      onFailure?.(name, e);
      const { recordedLag } = await import('../../catalog/replication.js');
      const lag = await recordedLag(ctx.cfg.backupDir, name, remoteUrl(remotes, name)).catch(() => undefined);
      return { remote: name, ok: false, error: e.message, hint: cliHint(e), lagSeconds: lag?.lagSeconds, missing: lag?.missing.length };
    }
  };
  // up to `parallel` destinations at once, each with its own retries; results in the order asked
  const results: RemoteSync[] = new Array(names.length);
  let next = 0;
  const worker = async () => {
    while (next < names.length && !ctx.signal.aborted) {
      const i = next++;
      results[i] = await one(names[i]!);
    }
  };
  const width = Math.max(1, Math.min(parallel ?? Math.min(names.length, 3), names.length));
  await Promise.all(Array.from({ length: width }, worker));
  return results.filter(Boolean);
}

/** The URL a remote name stands for (a URL given in place of a name is itself). */
export function remoteUrl(remotes: RemotesConfig, name: string): string {
  return remotes.remotes.find((r) => r.name === name)?.url ?? name;
}

/** "offsite is 3h behind (2 backups missing)" for each remote that is, for the summary and the notification. */
export function behindLine(results: RemoteSync[], formatAge: (ms: number) => string): string | undefined {
  const behind = results.flatMap((r) => {
    const lag = r.result?.lagSeconds ?? r.lagSeconds;
    return lag ? [`${r.remote} is ${formatAge(lag * 1000)} behind (${r.result?.missing ?? r.missing} backups missing)`] : [];
  });
  return behind.length ? behind.join(', ') : undefined;
}

function positive(flag: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v.trim()) || Number(v) < 1 || Number(v) > 64) throw new InvalidArgumentError(`${flag} must be a whole number from 1 to 64`);
    return Number(v);
  };
}

function wholeNumber(flag: string) {
  return (v: string) => {
    if (!/^\d+$/.test(v.trim()) || Number(v) > 100) throw new InvalidArgumentError(`${flag} must be a whole number from 0 to 100`);
    return Number(v);
  };
}

export function register(program: Command): void {
  program
    .command('sync')
    .description('upload every complete local backup the remote lacks (data first, the sidecar last as the commit marker)')
    .option('-r, --remote <name>', 'remote name or URL (repeatable; default: every enabled remote)', collect)
    .addOption(typeOption())
    .option('--latest', 'only the newest complete backup of each type')
    .option('--retries <n>', 'retries per file on transient errors, with exponential backoff (default 4)', wholeNumber('--retries'))
    .option('--parallel <n>', 'remotes synced at once (default: the number of remotes, up to 3)', positive('--parallel'))
    .option('--refresh', 'list each remote again instead of trusting what status.json records it holds')
    .addOption(remotesConfigOption())
    .addHelpText(
      'after',
      `
An interrupted sync resumes: files already on the remote with the right size (and checksum, on S3)
are skipped. A remote that fails does not stop the others; the exit code is 1 if any failed.
What each remote holds is recorded in <backup-dir>/status.json: a sync with nothing new opens no
connection at all; --refresh lists the remote again (after copies were deleted there by hand).

Examples:
  vertex-backup sync                          # every enabled remote in remote_storage.json
  vertex-backup sync --remote yandex --latest
  vertex-backup sync --parallel 1             # one remote after another
  vertex-backup sync --remote s3://bucket/prefix --type full`,
    )
    .action(
      action('sync', async (ctx, cmd) => {
        const o = cmd.opts() as { remote?: string[]; type?: BackupType; latest?: boolean; retries?: number; parallel?: number; refresh?: boolean };
        const cfg = await loadRemotes(ctx, cmd);
        const names = selectRemotes(cfg, o.remote);
        const results = await syncEach(
          ctx,
          cfg,
          names,
          { type: o.type, latest: o.latest, retries: o.retries, refresh: o.refresh },
          (name, e) => {
            // with one remote the error itself is the answer; with several, report it and go on
            if (names.length === 1) throw e;
            ctx.ui.warn(`sync to ${name} failed: ${e.message}`);
          },
          o.parallel,
        );
        const ok = results.every((r) => r.ok);
        const sent = results.reduce((n, r) => n + (r.result?.bytes ?? 0), 0);
        const uploadedBackups = results.reduce((n, r) => n + (r.result?.synced.length ?? 0), 0);
        const { formatAge } = await import('../../human.js');
        // which remote is behind and by how much: what the notification after a sync must say
        const behind = behindLine(results, formatAge);
        return {
          json: { ok, remotes: results },
          exitCode: ok ? 0 : 1,
          summary:
            (ok
              ? `synced ${countOf(uploadedBackups, 'backup')} (${formatBytes(sent)}) to ${names.join(', ')}`
              : `sync failed for ${results
                  .filter((r) => !r.ok)
                  .map((r) => `${r.remote} (${r.error})`)
                  .join(', ')}`) + (behind ? `; ${behind}` : ''),
          sizeBytes: sent,
          log: {
            remotes: results.map((r) => ({
              remote: r.remote,
              ok: r.ok,
              uploaded: r.result?.synced.map((s) => `${s.volume ? `volumes/${s.volume}/` : ''}${s.type}:${s.id}`),
              bytes: r.result?.bytes,
              cached: r.result?.cached,
              lag_seconds: r.result?.lagSeconds,
              error: r.error,
            })),
          },
          human: (ui) => {
            for (const r of results) {
              if (!r.result) {
                ui.out(`${ui.c.red('FAILED')} ${r.remote}: ${r.error}`);
                if (r.lagSeconds) ui.warn(`${r.remote}: ${formatAge(r.lagSeconds * 1000)} behind, ${r.missing} complete backups missing there`);
                continue;
              }
              const s = r.result;
              const rate = s.ms > 0 ? ` (${formatBytes(Math.round((s.bytes * 1000) / s.ms))}/s)` : '';
              const there = s.upToDate ? `; ${countOf(s.upToDate, 'backup')} ${s.upToDate === 1 ? 'was' : 'were'} already there` : '';
              if (!s.synced.length) ui.out(`${r.remote}: up to date, ${countOf(s.upToDate, 'backup')} there${s.cached ? ' (as recorded in status.json)' : ''}`);
              else {
                // files counted as sent, per backup: the files a backup's chain already had there are
                // no news (they once read "skipped 360" beside a backup of 30 files)
                ui.out(
                  ui.table(
                    ['type', 'id', 'files sent', 'size sent'],
                    s.synced.map((b) => [b.volume ? `volume ${b.volume}` : b.type, b.id, b.uploaded.length, formatBytes(b.bytes)]),
                  ),
                );
                const files = s.synced.reduce((n, b) => n + b.uploaded.length, 0);
                ui.out(
                  `${r.remote}: sent ${countOf(s.synced.length, 'backup')} (${countOf(files, 'file')}, ${formatBytes(s.bytes)}) in ${formatDuration(s.ms)}${rate}${there}`,
                );
              }
              if (s.removedHere?.length) {
                const shown = s.removedHere.slice(0, 5).map((k) => k.replace(':', ' '));
                const more = s.removedHere.length > shown.length ? ` and ${s.removedHere.length - shown.length} more` : '';
                ui.out(
                  `${r.remote} still holds ${countOf(s.removedHere.length, 'backup')} that rotation removed here: ${shown.join(', ')}${more} (its own retention: vertex-backup rotate --remote ${r.remote})`,
                );
              }
              for (const n of s.notComplete) ui.warn(`${r.remote}: not sent: ${n.volume ? `volume ${n.volume}` : n.type} ${n.id} is ${n.reason}`);
              if (s.lagSeconds) ui.warn(`${r.remote}: ${formatAge(s.lagSeconds * 1000)} behind, ${s.missing} complete backups missing there`);
            }
          },
        };
      }),
    );
}
