/**
 * Notification targets carry secrets in their URLs (the bot token sits in the Telegram path, a
 * healthchecks ping URL or a Slack webhook path is itself the credential), and fetch errors may echo
 * the URL. Everything this module returns or logs goes through a redactor first.
 */
export type Redactor = (text: string) => string;

export const REDACTED = '***';

export function makeRedactor(secrets: readonly (string | undefined)[]): Redactor {
  const needles = new Set<string>();
  for (const s of secrets) {
    // very short values would blank out ordinary words; no real token is that short
    if (!s || s.length < 6) continue;
    needles.add(s);
    needles.add(encodeURIComponent(s));
    const pathPart = urlSecretPart(s);
    if (pathPart) needles.add(pathPart);
  }
  // longest first, so a URL is replaced whole before its path part is
  const ordered = [...needles].sort((a, b) => b.length - a.length);
  return (text: string) => {
    let out = text;
    for (const n of ordered) out = out.split(n).join(REDACTED);
    return out;
  };
}

/** For a URL secret, the part after the origin: the bit that is actually secret. */
function urlSecretPart(s: string): string | undefined {
  try {
    const u = new URL(s);
    const rest = s.slice(u.origin.length);
    return rest.length >= 6 ? rest : undefined;
  } catch {
    return undefined;
  }
}

/** A URL safe to show: its origin only ("https://hc-ping.com/***"). */
export function describeUrl(url: string): string {
  try {
    return `${new URL(url).origin}/${REDACTED}`;
  } catch {
    return '(invalid URL)';
  }
}

/** One line, bounded: multi-line errors and long server bodies must not flood a log or a chat. */
export function oneLine(text: string, max = 300): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
