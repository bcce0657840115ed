import type { Command } from 'commander';
import { usageError } from '../../errors.js';
import type { RemotesConfig } from '../../remote/config.js';
import type { Remote } from '../../remote/remote.js';
import type { TransferEvent } from '../../offsite/transfer.js';
import { type Context, type Outcome, action } from '../run.js';
import { remotesConfigOption } from '../options.js';
import { formatBytes, formatDuration } from '../../human.js';

/**
 * `remote list|test|info`, plus the helpers every remote-aware command uses (sync, list --remote,
 * verify --remote, rotate --remote, restore --from): where the remotes config is, and opening a remote
 * by name or URL.
 */

export async function loadRemotes(ctx: Context, cmd: Command): Promise<RemotesConfig> {
  const { loadConfiguredRemotes } = await import('../../remote/config.js');
  const flag = (cmd.optsWithGlobals() as { remotesConfig?: string }).remotesConfig;
  const cfg = await loadConfiguredRemotes({ flag, env: ctx.cfg.env as NodeJS.ProcessEnv, fileRemotes: ctx.cfg.file.remotes, configFile: ctx.cfg.configFile });
  for (const w of cfg.warnings) ctx.ui.warn(w);
  return cfg;
}

export async function openRemoteByName(ctx: Context, remotes: RemotesConfig, nameOrUrl: string): Promise<Remote> {
  const { openMarkedRemote } = await import('../../offsite/remote-marker.js');
  return openMarkedRemote(remotes, nameOrUrl, ctx.cfg.env as NodeJS.ProcessEnv);
}

/** Transfer progress: the ProgressView decides how it is shown (spinner, plain line, nothing). */
export function transferProgress(ctx: Pick<Context, 'ui' | 'progress'>, label: string): (e: TransferEvent) => void {
  return (e) => {
    if (e.kind === 'progress') ctx.progress.update(`${label}: ${e.rel}`, { done: e.bytes, total: e.size });
    else if (e.kind === 'start') ctx.progress.update(`${label}: ${e.rel}`, { done: 0, total: e.size });
    else if (e.kind === 'retry') ctx.ui.warn(`${label}: ${e.rel}: attempt ${e.attempt} failed (${e.error}); retrying`);
  };
}

export function register(program: Command): void {
  const remote = program
    .command('remote')
    .description('configured remotes (offsite copies): list, test, info')
    .addOption(remotesConfigOption())
    .addHelpText(
      'after',
      `
Remotes are named in remote_storage.json (chmod 600 when it holds secrets):
  { "remotes": {
      "nas":    { "url": "file:///mnt/nas/backups" },
      "s3":     { "url": "s3://bucket/prefix", "endpoint": "https://s3.example.com", "region": "eu-west-1",
                  "force_path_style": true },
      "yandex": { "url": "webdavs://webdav.yandex.ru/vertex-backups" },
      "box":    { "url": "sftp://backup@host:22/backups", "private_key": "~/.ssh/id_ed25519" },
      "any":    { "url": "rclone:myremote:backups" } } }
Secrets may also come from the environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
YANDEX_DISK_TOKEN, WEBDAV_USERNAME/WEBDAV_PASSWORD, SFTP_PASSWORD. A URL works wherever a name does.

Examples:
  vertex-backup remote list
  vertex-backup remote test yandex
  vertex-backup remote info s3`,
    );

  remote
    .command('list')
    .description('the configured remotes, secrets masked')
    .action(
      action('remote list', async (ctx, cmd) => {
        const { maskSecrets, maskUrl } = await import('../../secrets.js');
        const cfg = await loadRemotes(ctx, cmd);
        const rows = cfg.remotes.map((r) => ({
          name: r.name,
          url: maskUrl(r.url),
          scheme: r.url.split(':')[0],
          enabled: r.enabled,
          options: maskSecrets(r.options),
        }));
        return {
          json: { config: cfg.file, remotes: rows },
          human: (ui) => {
            if (!rows.length) {
              ui.out(cfg.file ? `no remotes in ${cfg.file}` : 'no remotes config found (see: vertex-backup remote --help)');
              return;
            }
            ui.out(
              ui.table(
                ['name', 'url', 'enabled', 'options'],
                rows.map((r) => [
                  r.name,
                  r.url,
                  r.enabled ? 'yes' : 'no',
                  Object.entries(r.options)
                    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
                    .join(' '),
                ]),
              ),
            );
          },
        };
      }),
    );

  namedRemoteCommand(remote, 'test', 'connect, write a probe object, read it back, delete it; names the step that failed', async (ctx, cfg, name) => {
    const { testRemote } = await import('../../ops/sync.js');
    const { resolveRemote } = await import('../../remote/config.js');
    const markerId = resolveRemote(cfg, name).options.marker_id;
    const r = await testRemote(() => openRemoteByName(ctx, cfg, name), name, undefined, {
      markerId: typeof markerId === 'string' ? markerId : undefined,
    });
    const failed = r.steps.find((s) => !s.ok);
    return {
      json: r,
      exitCode: r.ok ? 0 : 1,
      summary: r.ok ? `remote ${name} works` : `remote ${name} failed at ${failed?.step}: ${failed?.error}`,
      log: { remote: name, ok: r.ok, failed_step: failed?.step },
      human: (ui) => {
        for (const s of r.steps)
          ui.out(`${s.ok ? ui.c.green('ok  ') : ui.c.red('FAIL')} ${s.step.padEnd(8)} ${formatDuration(s.ms)}${s.error ? `  ${s.error}` : ''}`);
        if (!r.ok) ui.error(`remote ${name} failed at ${failed?.step}`);
        else ui.out(`remote ${name} (${r.remote}) works`);
      },
    };
  });

  namedRemoteCommand(remote, 'info', 'used and free space (where the protocol tells) and what the remote holds', async (ctx, cfg, name) => {
    const r = await openRemoteByName(ctx, cfg, name);
    try {
      const { remoteInfo } = await import('../../ops/sync.js');
      const info = await remoteInfo(r, { signal: ctx.signal });
      return {
        json: info,
        human: (ui) => {
          ui.out(`remote    ${info.remote}`);
          ui.out(`used      ${info.space.used !== undefined ? formatBytes(info.space.used) : 'not reported by the protocol'}`);
          ui.out(`free      ${info.space.free !== undefined ? formatBytes(info.space.free) : 'not reported by the protocol'}`);
          if (info.space.total !== undefined) ui.out(`total     ${formatBytes(info.space.total)}`);
          ui.out(`stored    ${formatBytes(info.storedBytes)} in ${info.objects} objects`);
          ui.out(`backups   ${info.backups.ok} ok, ${info.backups.incomplete} incomplete, ${info.backups.damaged} damaged`);
        },
      };
    } finally {
      await r.close();
    }
  });
}

/** `remote test|info NAME`: the remote's name or URL, with the remotes config loaded. */
function namedRemoteCommand(
  parent: Command,
  name: string,
  description: string,
  run: (ctx: Context, cfg: RemotesConfig, remote: string) => Promise<Outcome>,
): void {
  parent
    .command(name)
    .argument('<name>', 'remote name or URL')
    .description(description)
    .action(
      action(`remote ${name}`, async (ctx, cmd) => {
        const [remote] = cmd.args as [string];
        return run(ctx, await loadRemotes(ctx, cmd), remote);
      }),
    );
}

/** Every enabled remote, or the ones named; a usage error when there is none. */
export function selectRemotes(cfg: RemotesConfig, names: string[] | undefined): string[] {
  if (names?.length) return names;
  const enabled = cfg.remotes.filter((r) => r.enabled).map((r) => r.name);
  if (!enabled.length) {
    throw usageError(
      cfg.file ? `no enabled remotes in ${cfg.file}` : 'no remotes configured',
      'name one with --remote NAME|URL, or add remotes to remote_storage.json (see: vertex-backup remote --help)',
    );
  }
  return enabled;
}
