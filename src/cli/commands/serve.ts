import type { Command } from 'commander';
import { action } from '../run.js';

export function register(program: Command): void {
  program
    .command('serve')
    .description("HTTP API (the admin panel's /backups/… routes), a status page at / and /healthz")
    .option('--host <address>', 'address to listen on (default 127.0.0.1; any other needs TLS or --insecure-bind)', '127.0.0.1')
    .option('--port <n>', 'TCP port (0 picks a free one, printed at start)', '8787')
    .option('--socket <path>', 'listen on this Unix socket instead of TCP')
    .option('--tls-cert <file>', 'TLS certificate (PEM)')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--insecure-bind', 'allow a non-loopback address without TLS (a TLS proxy in front does the encryption)')
    .option('--max-age <duration>', 'the newest backup of each type may be this old (status page, /healthz; env BACKUP_CHECK_MAX_AGE, default 26h)')
    .option('--headers-timeout <seconds>', 'a client has this long to send its request headers', '10')
    .addHelpText(
      'after',
      `
Tokens: vertex-backup token create --scope read|trigger|restore (the config file keeps only their hash).
Send one as "Authorization: Bearer TOKEN" or as the authToken cookie. See docs/serve.md.

Examples:
  vertex-backup --config /etc/vertex-backup/config.json serve
  vertex-backup serve --port 0                       # a free port, printed on stderr
  vertex-backup serve --socket /run/vertex-backup/api.sock`,
    )
    .action(
      action('serve', async (ctx, cmd) => {
        const o = cmd.opts() as {
          host: string;
          port: string;
          socket?: string;
          tlsCert?: string;
          tlsKey?: string;
          insecureBind?: boolean;
          maxAge?: string;
          headersTimeout: string;
        };
        const { BackupError } = await import('../../errors.js');
        const port = Number(o.port);
        if (!/^\d+$/.test(o.port) || port > 65535)
          throw new BackupError('USAGE', `--port must be a number from 0 to 65535, got '${o.port}'`, { argument: true });
        const headersS = Number(o.headersTimeout);
        if (!(headersS > 0)) throw new BackupError('USAGE', `--headers-timeout must be a number of seconds, got '${o.headersTimeout}'`, { argument: true });
        const { parseDuration } = await import('../../schedule/duration.js');
        const { DEFAULT_MAX_AGE_MS } = await import('../../ops/check.js');
        const rawAge = o.maxAge ?? ctx.cfg.env.BACKUP_CHECK_MAX_AGE;
        const maxAgeMs = rawAge ? parseDuration(rawAge, o.maxAge ? '--max-age' : 'BACKUP_CHECK_MAX_AGE') : DEFAULT_MAX_AGE_MS;
        const { startServer } = await import('../../api/server.js');
        const server = await startServer({
          cfg: ctx.cfg,
          configFile: ctx.cfg.configFile,
          maxAgeMs,
          host: o.host,
          port,
          socket: o.socket,
          tlsCert: o.tlsCert,
          tlsKey: o.tlsKey,
          insecureBind: o.insecureBind,
          headersTimeoutMs: headersS * 1000,
        });
        const { readTokens } = await import('../../api/tokens.js');
        if (!readTokens(ctx.cfg.configFile).length)
          ctx.ui.warn('no tokens yet: every request but /healthz is refused; create one with: vertex-backup token create --scope read');
        ctx.ui.info(`listening on ${server.url}`);
        await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
        await server.close();
        // a cancelled job removes its partial files before the process ends
        for (let i = 0; i < 600 && server.jobs.running().length; i++) await new Promise((r) => setTimeout(r, 100));
        return { json: { ok: true, url: server.url } };
      }),
    );
}
