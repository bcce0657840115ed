import type { Command } from 'commander';
import { action } from '../run.js';

/** How recent a failed run in status.json must be to be named as the reason a unit failed. */
const RECENT_MS = 6 * 3_600_000;

export function register(program: Command): void {
  program
    .command('notify')
    .description('send a message through the configured channels (used by the OnFailure= systemd unit)')
    .option('--failed-unit <unit>', 'report that this systemd unit failed, with the reason recorded in status.json')
    .option('--message <text>', 'send this text (a failure unless --ok)')
    .option('--ok', 'with --message: report a success, not a failure')
    .addHelpText(
      'after',
      `
Channels: TELEGRAM_BOT_TOKEN + TELEGRAM_CHAT_ID, NOTIFY_WEBHOOK_URL, HEALTHCHECK_URL, UPTIME_KUMA_URL. NOTIFY_ON=never
silences this command too. Exit 0 when at least one channel took the message, 1 when all failed,
2 when no channel is configured.

Examples:
  vertex-backup notify --failed-unit vertex-backup.service
  vertex-backup notify --message "disk replaced, backups paused until tonight" --ok`,
    )
    .action(
      action('notify', async (ctx, cmd) => {
        const o = cmd.opts() as { failedUnit?: string; message?: string; ok?: boolean };
        const { usageError } = await import('../../errors.js');
        const { resolveNotifyConfig, hasChannels, notifyResult } = await import('../../notify/index.js');
        const { readStatus } = await import('../../catalog/status.js');
        if (!o.failedUnit && !o.message) throw usageError('nothing to send', 'pass --failed-unit UNIT or --message TEXT');

        // an explicit NOTIFY_ON=never mutes everything; otherwise this command always sends
        if (resolveNotifyConfig(ctx.cfg.env, undefined, ctx.cfg.file).mode === 'never' && (ctx.cfg.env.NOTIFY_ON ?? ctx.cfg.file.notifyOn)) {
          return { json: { sent: false, reason: 'NOTIFY_ON=never' }, human: (ui) => ui.info('NOTIFY_ON=never: nothing sent') };
        }
        const config = resolveNotifyConfig(ctx.cfg.env, 'always', ctx.cfg.file);
        if (!hasChannels(config)) {
          throw usageError(
            'no notification channel is configured',
            'set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID, NOTIFY_WEBHOOK_URL, HEALTHCHECK_URL or UPTIME_KUMA_URL',
          );
        }

        let result;
        if (o.failedUnit) {
          // the unit's own run recorded why it failed, unless it died before it could
          const { status } = await readStatus(ctx.cfg.backupDir);
          const last = status?.last_run;
          const recent = last && !last.ok && Date.now() - Date.parse(last.finished_at) < RECENT_MS ? last : undefined;
          result = {
            command: `systemd unit ${o.failedUnit}`,
            ok: false,
            summary: o.message ?? `see: journalctl -u ${o.failedUnit} -n 50`,
            error: recent
              ? `${recent.type ? `${recent.command} --type ${recent.type}` : recent.command} failed: ${recent.error ?? `exit ${recent.exit_code}`}`
              : 'the unit failed before recording a reason (see the journal)',
            exitCode: recent?.exit_code,
            durationMs: recent?.duration_ms ?? -1,
          };
        } else {
          result = { command: 'notify', ok: !!o.ok, summary: o.ok ? (o.message ?? '') : '', error: o.ok ? undefined : o.message, durationMs: -1 };
        }
        const report = await notifyResult(result, config, (level, msg) => (level === 'warn' ? ctx.ui.warn(msg) : ctx.ui.info(msg)));
        const delivered = report.outcomes.filter((x) => x.ok).length;
        return {
          json: { sent: delivered > 0, outcomes: report.outcomes },
          exitCode: delivered > 0 ? 0 : 1,
          summary: `notification sent via ${delivered} of ${report.outcomes.length} channel(s)`,
          human: (ui) => ui.out(`sent via ${delivered} of ${report.outcomes.length} channel(s)`),
        };
      }),
    );
}
