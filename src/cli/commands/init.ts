import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { type Command, Option } from 'commander';
import { argumentError } from '../../errors.js';
import { type Context, action } from '../run.js';

const DEFAULT_ENV_OUT = '/etc/vertex-backup/env';

interface InitOptions {
  envOut: string;
  remotesOut?: string;
  remote: string[];
  recipient: string[];
  telegramBotToken?: string;
  telegramChatId?: string;
  healthcheckUrl?: string;
  systemdDir?: string;
  bin?: string;
  adopt?: boolean;
  force?: boolean;
  owner?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

export function register(program: Command): void {
  program
    .command('init')
    .description('set up a new installation: env file, remotes file, marked backup directory and remotes, systemd overrides')
    .addOption(new Option('--env-out <file>', 'write the settings here (mode 0600; never overwritten without --force)').default(DEFAULT_ENV_OUT))
    .option(
      '--remotes-out <file>',
      'write the remotes file here (mode 0600; default: /var/lib/vertex-backup/remote_storage.json with the default --env-out, else beside the env file)',
    )
    .option('--remote <name=url>', 'an offsite copy, probed and marked (repeatable): nas=file:///mnt/nas/backups, s3=s3://bucket/prefix', collect, [])
    .option('--recipient <age1…>', 'encrypt backups to this age public key (repeatable; vertex-backup keygen makes one)', collect, [])
    .option('--telegram-bot-token <token>', 'send failures to Telegram (or env TELEGRAM_BOT_TOKEN: keeps it out of ps)')
    .option('--telegram-chat-id <id>', 'the Telegram chat (or env TELEGRAM_CHAT_ID)')
    .option('--healthcheck-url <url>', 'a healthchecks.io ping URL, pinged by every run (or env HEALTHCHECK_URL)')
    .option('--systemd-dir <dir>', 'also write the overrides as drop-ins under DIR (/etc/systemd/system), instead of only printing them')
    .option('--bin <path>', 'the vertex-backup the units run (default: this one)')
    .option('--owner <user>', 'chown the backup directory and the remotes file to this user (the units run as vertex-backup)')
    .option('--adopt', 'only mark an existing backup directory (a set-up made before init existed)')
    .option('--force', 'replace an existing env or remotes file')
    .addHelpText(
      'after',
      `
Paths come from --db-path, --storage-path and --backup-dir (or DATABASE_PATH / DATABASE_URL,
STORAGE_PATH, BACKUP_DIR); on a terminal init asks for the ones missing. The backup directory gets a
marker, .vertex-backup-dir, whose id goes to the env file as BACKUP_DIR_ID: from then on a missing
marker (a disk that did not mount) is an error, never a new empty directory. Each --remote is
probed (write, read, delete) and marked the same way (.vertex-backup-remote, marker_id in the
remotes file). A file:// remote's directory is created only when its parent exists.

Examples:
  vertex-backup init --db-path /srv/app/app.db --storage-path /srv/app/media --backup-dir /var/backups/vertex-backup \\
      --remote nas=file:///mnt/nas/backups --recipient age1… --healthcheck-url https://hc-ping.com/<uuid>
  vertex-backup init --adopt --backup-dir /var/backups/vertex-backup     # an existing set-up`,
    )
    .action(
      action('init', async (ctx, cmd) => {
        const o = cmd.opts() as InitOptions;
        const g = ctx.global;
        if (o.adopt) {
          const { adoptBackupDir } = await import('../../ops/init.js');
          const dir = await adoptBackupDir(ctx.cfg.backupDir);
          return {
            json: { backup_dir: dir },
            log: { adopt: dir.path, backup_dir_id: dir.id },
            human: (ui) => {
              ui.out(`${dir.adopted ? 'marked' : 'already marked'}: ${dir.path} (id ${dir.id})`);
              ui.out('Add this line to the env file the units read (/etc/vertex-backup/env), so that a missing marker is an error:');
              ui.out(`  BACKUP_DIR_ID=${dir.id}`);
            },
          };
        }
        const env = ctx.cfg.env;
        const database = await askIfMissing(ctx, g.dbPath ?? env.DATABASE_URL ?? env.DATABASE_PATH, '--db-path', 'SQLite database file (or postgresql:// URL)');
        const storagePath = await askIfMissing(ctx, g.storagePath ?? env.STORAGE_PATH, '--storage-path', 'media (storage) directory');
        const backupDir = await askIfMissing(ctx, g.backupDir ?? env.BACKUP_DIR, '--backup-dir', 'backup directory');
        const abs = (p: string) => (/^postgres(ql)?:\/\//i.test(p) ? p : path.resolve(p));
        const remotes = o.remote.map((spec) => {
          const m = spec.match(/^([A-Za-z0-9_-]+)=(.+)$/);
          if (!m) throw argumentError(`--remote ${spec}: expected NAME=URL`, 'for example --remote nas=file:///mnt/nas/backups');
          return { name: m[1]!, url: m[2]! };
        });
        const envOut = path.resolve(o.envOut);
        const { initSetup } = await import('../../ops/init.js');
        const r = await initSetup(
          {
            database: abs(database),
            storagePath: abs(storagePath),
            backupDir: abs(backupDir),
            envOut,
            // under systemd the service user reads the remotes file; /etc/vertex-backup is root's
            remotesOut: path.resolve(
              o.remotesOut ??
                (envOut === DEFAULT_ENV_OUT ? '/var/lib/vertex-backup/remote_storage.json' : path.join(path.dirname(envOut), 'remote_storage.json')),
            ),
            owner: o.owner ? userIds(o.owner) : undefined,
            remotes,
            recipients: o.recipient,
            telegramBotToken: o.telegramBotToken ?? env.TELEGRAM_BOT_TOKEN,
            telegramChatId: o.telegramChatId ?? env.TELEGRAM_CHAT_ID,
            healthcheckUrl: o.healthcheckUrl ?? env.HEALTHCHECK_URL,
            metricsFile: g.metricsFile ?? env.METRICS_FILE,
            bin: path.resolve(o.bin ?? process.argv[1] ?? 'vertex-backup'),
            force: !!o.force,
            env: env as NodeJS.ProcessEnv,
          },
          { signal: ctx.signal },
        );
        const written: string[] = [];
        if (o.systemdDir) {
          const { writeDropIns } = await import('../../ops/init.js');
          written.push(...(await writeDropIns(path.resolve(o.systemdDir), r.overrides)));
        }
        const failed = r.remotes.filter((x) => !x.ok);
        return {
          json: { ...r, drop_ins: written },
          exitCode: failed.length ? 1 : 0,
          summary: failed.length ? `init: remote ${failed.map((x) => x.name).join(', ')} failed` : 'init: set up',
          log: { backup_dir_id: r.backup_dir.id, remotes: r.remotes.map((x) => ({ name: x.name, ok: x.ok })) },
          human: (ui) => {
            ui.out(`backup directory  ${r.backup_dir.path} (${r.backup_dir.created ? 'created, ' : ''}marked ${r.backup_dir.id})`);
            ui.out(`env file          ${r.env_file} (0600)`);
            ui.out(`remotes file      ${r.remotes_file} (0600)`);
            for (const x of r.remotes) {
              if (x.ok) ui.out(`remote ${x.name.padEnd(10)} ${x.url}: ok, marked ${x.marker_id}${x.created_root ? ` (created ${x.created_root})` : ''}`);
              else ui.error(`remote ${x.name}: ${x.url}: ${x.error}`);
              if (x.created_root && x.on_root_filesystem)
                ui.warn(`remote ${x.name}: ${x.created_root} is on the root filesystem: if it should be a mounted disk or share, mount it and run init again`);
            }
            ui.out('');
            if (written.length) ui.out(`systemd drop-ins written: ${written.join(' ')}`);
            else {
              ui.out('systemd: apply the paths of this set-up with `systemctl edit UNIT` and these lines:');
              for (const [unit, text] of Object.entries(r.overrides)) ui.out(`\n# systemctl edit ${unit}\n${text.trimEnd()}`);
            }
            ui.out('');
            ui.out('Next steps:');
            if (!o.owner)
              ui.out(`  1. chown vertex-backup: ${r.remotes_file} ${r.backup_dir.path}   # the units run as vertex-backup (or: init --owner vertex-backup)`);
            ui.out('  2. systemctl daemon-reload && systemctl enable --now vertex-backup.timer vertex-backup-drill.timer');
            ui.out('  3. systemctl start vertex-backup.service && journalctl -u vertex-backup.service -e   # the first backup, now');
            ui.out(`  4. vertex-backup --env-file ${r.env_file} check   # what monitoring will ask every day`);
          },
        };
      }),
    );
}

/** A setting from the flags or the environment; on a terminal, asked for; otherwise a usage error. */
async function askIfMissing(ctx: Context, value: string | undefined, flag: string, what: string): Promise<string> {
  if (value) return value;
  if (process.stdin.isTTY !== true || process.stderr.isTTY !== true || ctx.global.json) {
    throw argumentError(`init needs the ${what}: ${flag}`, 'init asks for missing paths only on a terminal');
  }
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    for (;;) {
      const answer = (await rl.question(`${what}: `, { signal: ctx.signal })).trim();
      if (answer) return answer;
    }
  } finally {
    rl.close();
  }
}

/** uid and gid of a user by name (or number), from id(1): Node has no getpwnam. */
function userIds(user: string): { uid: number; gid: number } {
  const id = (flag: string) => {
    const r = spawnSync('id', [flag, user], { encoding: 'utf8' });
    const n = Number(r.stdout.trim());
    if (r.status !== 0 || !Number.isInteger(n)) throw argumentError(`--owner ${user}: no such user`, 'scripts/install.sh creates vertex-backup');
    return n;
  };
  return { uid: id('-u'), gid: id('-g') };
}
