import { sendWithRetry, type SendOptions } from './http.js';
import type { TelegramConfig } from './types.js';

/** Bot API sendMessage. Telegram caps a message at 4096 characters. */
export async function sendTelegram(cfg: TelegramConfig, text: string, opts: SendOptions): Promise<{ attempts: number }> {
  const base = cfg.apiUrl.replace(/\/+$/, '');
  return sendWithRetry(
    {
      url: `${base}/bot${cfg.token}/sendMessage`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ chat_id: cfg.chatId, text: text.slice(0, 4096), disable_web_page_preview: true }),
      accept: (_status, body) => {
        try {
          const j = JSON.parse(body) as { ok?: boolean; description?: string };
          if (j.ok === false) return `Telegram refused the message: ${j.description ?? 'no reason given'}`;
        } catch {
          // a 2xx without JSON (a proxy, a test server): the status is all we have, and it is a success
        }
        return undefined;
      },
    },
    opts,
  );
}
