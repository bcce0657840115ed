import { hostname } from 'node:os';
import { usageError } from '../errors.js';
import { registerSecret } from '../secrets.js';
import { NOTIFY_MODES, type NotifyConfig, type NotifyMode } from './types.js';

export const DEFAULT_TELEGRAM_API_URL = 'https://api.telegram.org';
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRIES = 2;
const DEFAULT_RETRY_DELAY_MS = 1_000;

/** Config-file keys (see src/config.ts) and the variables they stand for; the environment wins. */
const FILE_KEYS: Record<string, string> = {
  notifyOn: 'NOTIFY_ON',
  telegramBotToken: 'TELEGRAM_BOT_TOKEN',
  telegramChatId: 'TELEGRAM_CHAT_ID',
  telegramApiUrl: 'TELEGRAM_API_URL',
  notifyWebhookUrl: 'NOTIFY_WEBHOOK_URL',
  healthcheckUrl: 'HEALTHCHECK_URL',
  uptimeKumaUrl: 'UPTIME_KUMA_URL',
};

/**
 * Reads the notification settings. `flag` is `--notify`: `true` turns notifications on for failures
 * (or for every run when NOTIFY_ON=always); a string names the mode outright; undefined leaves it to
 * NOTIFY_ON, and without that to "never". Opt-in, so the shell wrapper and the OnFailure= unit, which
 * report on their own, do not cause duplicates.
 */
export function resolveNotifyConfig(processEnv: NodeJS.ProcessEnv, flag?: string | boolean, file: Record<string, unknown> = {}): NotifyConfig {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, name] of Object.entries(FILE_KEYS)) if (typeof file[key] === 'string') env[name] = file[key] as string;
  Object.assign(env, processEnv);
  const mode = resolveMode(env, flag);
  const token = nonEmpty(env.TELEGRAM_BOT_TOKEN);
  const chatId = nonEmpty(env.TELEGRAM_CHAT_ID);
  const apiUrl = nonEmpty(env.TELEGRAM_API_URL) ?? DEFAULT_TELEGRAM_API_URL;
  const webhookUrl = nonEmpty(env.NOTIFY_WEBHOOK_URL);
  const healthcheckUrl = nonEmpty(env.HEALTHCHECK_URL);
  const uptimeKumaUrl = nonEmpty(env.UPTIME_KUMA_URL);

  let telegramProblem: string | undefined;
  if (token && !chatId) telegramProblem = 'TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_ID is not';
  if (!token && chatId) telegramProblem = 'TELEGRAM_CHAT_ID is set but TELEGRAM_BOT_TOKEN is not';

  // the token, and the webhook and ping URLs (their paths are the credential), leave no output from now on
  const secrets = [token, webhookUrl, healthcheckUrl, uptimeKumaUrl].filter((s): s is string => !!s);
  secrets.forEach(registerSecret);
  return {
    mode,
    telegram: token && chatId ? { token, chatId, apiUrl } : undefined,
    telegramProblem,
    webhookUrl,
    healthcheckUrl,
    uptimeKumaUrl,
    timeoutMs: positiveInt(env, 'NOTIFY_TIMEOUT_MS', DEFAULT_TIMEOUT_MS, 1),
    retries: positiveInt(env, 'NOTIFY_RETRIES', DEFAULT_RETRIES, 0),
    retryDelayMs: positiveInt(env, 'NOTIFY_RETRY_DELAY_MS', DEFAULT_RETRY_DELAY_MS, 0),
    host: nonEmpty(env.NOTIFY_HOSTNAME) ?? hostname(),
    secrets,
  };
}

export function hasChannels(cfg: NotifyConfig): boolean {
  return !!(cfg.telegram || cfg.telegramProblem || cfg.webhookUrl || cfg.healthcheckUrl || cfg.uptimeKumaUrl);
}

function resolveMode(env: NodeJS.ProcessEnv, flag?: string | boolean): NotifyMode {
  if (typeof flag === 'string' && flag !== '') return parseMode(flag, '--notify');
  const raw = nonEmpty(env.NOTIFY_ON);
  const fromEnv = raw ? parseMode(raw, 'NOTIFY_ON') : undefined;
  if (flag === true) return fromEnv === 'always' ? 'always' : 'failure';
  return fromEnv ?? 'never';
}

function parseMode(value: string, source: string): NotifyMode {
  const v = value.trim().toLowerCase();
  if ((NOTIFY_MODES as readonly string[]).includes(v)) return v as NotifyMode;
  throw usageError(`${source}: unknown value "${value}"`, `use one of: ${NOTIFY_MODES.join(', ')}`);
}

function positiveInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = nonEmpty(env[name]);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw usageError(`${name}: expected an integer >= ${min}, got "${raw}"`);
  return n;
}

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}
