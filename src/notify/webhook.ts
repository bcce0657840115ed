import { hostname } from 'node:os';
import { sendWithRetry, type SendOptions } from './http.js';
import type { RunResult } from './types.js';

/**
 * The JSON a generic webhook receives. `text` holds the same message as the chat, so services that
 * only look at `text` (Slack-compatible incoming webhooks, Mattermost, ntfy relays) work unchanged.
 */
export interface WebhookPayload {
  event: 'vertex-backup.result';
  host: string;
  command: string;
  ok: boolean;
  summary: string;
  size_bytes: number | null;
  duration_ms: number;
  error: string | null;
  exit_code: number | null;
  timestamp: string;
  text: string;
}

export function webhookPayload(result: RunResult, text: string, host = hostname()): WebhookPayload {
  return {
    event: 'vertex-backup.result',
    host,
    command: result.command,
    ok: result.ok,
    summary: result.summary,
    size_bytes: result.sizeBytes ?? null,
    duration_ms: Math.round(result.durationMs),
    error: result.ok ? null : (result.error ?? null),
    exit_code: result.exitCode ?? null,
    timestamp: new Date().toISOString(),
    text,
  };
}

export async function sendWebhook(url: string, payload: WebhookPayload, opts: SendOptions): Promise<{ attempts: number }> {
  return sendWithRetry(
    {
      url,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'vertex-backup' },
      body: JSON.stringify(payload),
    },
    opts,
  );
}
