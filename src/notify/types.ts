/** What any command reports to the notifiers: a plain value, so the CLI, the scheduler and tests can build one. */
export interface RunResult {
  /** What ran, as the operator would type it: "create --type full", "check", "rotate". */
  command: string;
  ok: boolean;
  /** One line saying what was done: "full backup 20240101_020000 (database + storage, 1532 files)". */
  summary: string;
  sizeBytes?: number;
  /** Negative when unknown. */
  durationMs: number;
  /** The one-line reason on failure (already free of secrets as far as the caller knows). */
  error?: string;
  exitCode?: number;
  /** the last lines of the run's own output: the body of the healthcheck ping */
  log?: string;
  /** one UUID per run: pairs the healthcheck start ping with the end ping (`?rid=`) */
  runId?: string;
}

/** failure: only failed runs reach Telegram/webhook; always: every run; never: nothing at all. */
export type NotifyMode = 'failure' | 'always' | 'never';
export const NOTIFY_MODES: readonly NotifyMode[] = ['failure', 'always', 'never'];

export interface TelegramConfig {
  token: string;
  chatId: string;
  apiUrl: string; // https://api.telegram.org, overridable for tests and self-hosted Bot API servers
}

export interface NotifyConfig {
  mode: NotifyMode;
  telegram?: TelegramConfig;
  /** Set when TELEGRAM_BOT_TOKEN is set without TELEGRAM_CHAT_ID (or the reverse): reported as a failed channel. */
  telegramProblem?: string;
  webhookUrl?: string;
  healthcheckUrl?: string;
  /** an Uptime Kuma push URL: status=up|down, msg, ping */
  uptimeKumaUrl?: string;
  timeoutMs: number;
  retries: number;
  /** Delay before the first retry; doubled each time. */
  retryDelayMs: number;
  host: string;
  /** Every secret value known to this config: redacted from anything we log or return. */
  secrets: string[];
}

export type ChannelName = 'telegram' | 'webhook' | 'healthcheck' | 'uptime-kuma';

export interface ChannelOutcome {
  channel: ChannelName;
  ok: boolean;
  attempts: number;
  /** Redacted, one line. */
  error?: string;
}

export interface NotifyReport {
  /** False when the mode or the result meant nothing had to be sent. */
  attempted: boolean;
  outcomes: ChannelOutcome[];
}

export type NotifyLogger = (level: 'info' | 'warn', message: string) => void;
