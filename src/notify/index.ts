import { redact, registerSecret } from '../secrets.js';
import { formatMessage, oneLine } from './message.js';
import { sendTelegram } from './telegram.js';
import { sendWebhook, webhookPayload } from './webhook.js';
import { pingBody, sendKuma, sendPing } from './healthcheck.js';
import type { SendOptions } from './http.js';
import type { ChannelName, ChannelOutcome, NotifyConfig, NotifyLogger, NotifyReport, RunResult } from './types.js';

export type * from './types.js';
export { resolveNotifyConfig, hasChannels, DEFAULT_TELEGRAM_API_URL } from './config.js';
export { formatMessage } from './message.js';

/**
 * Sends the result of a command to every configured channel. Never throws and never changes the
 * outcome of the run it reports: a failed channel is logged (redacted) and listed in the report.
 *
 * Telegram and the webhook follow the mode (failure: failed runs only; always: every run). The
 * healthcheck ping is sent for every run unless the mode is "never", because a dead-man's-switch
 * monitor needs the successes to notice that runs stopped.
 */
export async function notifyResult(result: RunResult, config: NotifyConfig, log?: NotifyLogger): Promise<NotifyReport> {
  if (config.mode === 'never') return { attempted: false, outcomes: [] };
  // resolveNotifyConfig registered them; a config built by hand may not have been
  config.secrets.forEach(registerSecret);
  const safe: RunResult = { ...result, summary: redact(result.summary), error: result.error && redact(result.error) };
  const text = formatMessage(safe, config.host);
  const opts = sendOptions(config);
  const loud = config.mode === 'always' || !result.ok;

  const jobs: Promise<ChannelOutcome>[] = [];
  if (loud && config.telegram) {
    const tg = config.telegram;
    jobs.push(attempt('telegram', () => sendTelegram(tg, text, opts)));
  } else if (loud && config.telegramProblem) {
    jobs.push(Promise.resolve({ channel: 'telegram', ok: false, attempts: 0, error: config.telegramProblem }));
  }
  if (loud && config.webhookUrl) {
    const url = config.webhookUrl;
    jobs.push(attempt('webhook', () => sendWebhook(url, webhookPayload(safe, text, config.host), opts)));
  }
  if (config.healthcheckUrl) {
    const url = config.healthcheckUrl;
    // the exit status itself when known (/0 would do for success; the base URL says the same)
    const kind = result.ok ? 'success' : result.exitCode ? result.exitCode : 'fail';
    jobs.push(attempt('healthcheck', () => sendPing(url, kind, pingBody(text, result.log && redact(result.log)), opts, result.runId)));
  }
  if (config.uptimeKumaUrl) {
    const url = config.uptimeKumaUrl;
    const msg = oneLine(
      result.ok ? `${result.command}: ${safe.summary || 'ok'}` : `${result.command} FAILED: ${safe.error || safe.summary || 'see the log'}`,
      250,
    );
    jobs.push(attempt('uptime-kuma', () => sendKuma(url, result.ok, msg, result.durationMs, opts)));
  }
  if (jobs.length === 0) return { attempted: false, outcomes: [] };
  const outcomes = await Promise.all(jobs);
  report(outcomes, log);
  return { attempted: true, outcomes };
}

/** The healthcheck "/start" ping at the beginning of a run, so the monitor can measure its duration. */
export async function notifyStart(command: string, config: NotifyConfig, log?: NotifyLogger, runId?: string): Promise<NotifyReport> {
  if (config.mode === 'never' || !config.healthcheckUrl) return { attempted: false, outcomes: [] };
  config.secrets.forEach(registerSecret);
  const url = config.healthcheckUrl;
  const outcome = await attempt(
    'healthcheck',
    // one short attempt: a monitor that is down must not hold up the backup it would time
    () =>
      sendPing(
        url,
        'start',
        `vertex-backup on ${config.host}: ${command} started`,
        {
          ...sendOptions(config),
          retries: 0,
          timeoutMs: Math.min(config.timeoutMs, 5000),
        },
        runId,
      ),
  );
  report([outcome], log);
  return { attempted: true, outcomes: [outcome] };
}

function sendOptions(config: NotifyConfig): SendOptions {
  return { timeoutMs: config.timeoutMs, retries: config.retries, retryDelayMs: config.retryDelayMs };
}

async function attempt(channel: ChannelName, send: () => Promise<{ attempts: number }>): Promise<ChannelOutcome> {
  try {
    const { attempts } = await send();
    return { channel, ok: true, attempts };
  } catch (err) {
    const e = err as Error & { attempts?: number };
    return { channel, ok: false, attempts: e.attempts ?? 0, error: redact(oneLine(e.message ?? String(err))) };
  }
}

function report(outcomes: ChannelOutcome[], log?: NotifyLogger): void {
  if (!log) return;
  for (const o of outcomes) {
    if (o.ok) log('info', `notification sent via ${o.channel}`);
    else log('warn', `notification via ${o.channel} failed after ${o.attempts} attempt(s): ${o.error}`);
  }
}
