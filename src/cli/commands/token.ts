import type { Command } from 'commander';
import { Option } from 'commander';
import { action } from '../run.js';

export function register(program: Command): void {
  const token = program.command('token').description('API tokens for `serve`: the config file keeps only their SHA-256');
  token
    .command('create')
    .description('create a token and print it (the only time it is shown)')
    .addOption(
      new Option('--scope <scope>', 'read: GET routes and the page; trigger: also create/verify/drill/sync; restore: also restore and rotate')
        .choices(['read', 'trigger', 'restore'])
        .makeOptionMandatory(),
    )
    .option('--expires <duration>', 'the token stops working after this long, e.g. 90d')
    .option('--name <label>', 'a label to tell tokens apart')
    .addHelpText(
      'after',
      `
Needs a config file (--config FILE or VERTEX_BACKUP_CONFIG); it is created (mode 0600) when missing.

Examples:
  vertex-backup --config /etc/vertex-backup/config.json token create --scope read --name phone
  vertex-backup --config /etc/vertex-backup/config.json token create --scope restore --expires 90d --json`,
    )
    .hook('preAction', async (_this, cmd) => {
      // resolveConfig reads the file: one that does not exist yet starts as an empty object
      const file = (cmd.optsWithGlobals() as { config?: string }).config ?? process.env.VERTEX_BACKUP_CONFIG;
      if (file) {
        const fs = await import('node:fs');
        if (!fs.existsSync(file)) fs.writeFileSync(file, '{}\n', { mode: 0o600, flag: 'wx' });
      }
    })
    .action(
      action('token', async (ctx, cmd) => {
        const o = cmd.opts() as { scope: 'read' | 'trigger' | 'restore'; expires?: string; name?: string };
        const { usageError } = await import('../../errors.js');
        if (!ctx.cfg.configFile)
          throw usageError('token create stores the token hash in the config file, and none is set', 'pass --config FILE (created when missing)');
        const { parseDuration } = await import('../../schedule/duration.js');
        const expiresInMs = o.expires ? parseDuration(o.expires, '--expires') : undefined;
        const { createToken } = await import('../../api/tokens.js');
        const { token: secret, stored } = await createToken(ctx.cfg.configFile, o.scope, { expiresInMs, name: o.name });
        // printed once on purpose: the config file keeps only the hash
        return {
          json: { id: stored.id, scope: stored.scope, createdAt: stored.created_at, expiresAt: stored.expires_at, token: secret },
          human: (ui) => {
            process.stdout.write(`${secret}\n`);
            ui.info(
              `token ${stored.id} (scope ${stored.scope}${stored.expires_at ? `, expires ${stored.expires_at}` : ''}): keep it now, it is not shown again`,
            );
          },
        };
      }),
    );
}
