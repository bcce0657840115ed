import { Command } from 'commander';
import { VERSION } from '../version.js';
import { register as registerCheck } from './commands/check.js';
import { register as registerDrill } from './commands/drill.js';
import { register as registerCreate } from './commands/create.js';
import { register as registerList } from './commands/list.js';
import { register as registerRestore } from './commands/restore.js';
import { register as registerNotify } from './commands/notify.js';
import { register as registerRemote } from './commands/remote.js';
import { register as registerRotate } from './commands/rotate.js';
import { register as registerSchedule } from './commands/schedule.js';
import { register as registerSync } from './commands/sync.js';
import { register as registerStats } from './commands/stats.js';
import { register as registerVerify } from './commands/verify.js';
import { register as registerLs } from './commands/ls.js';
import { register as registerDiff } from './commands/diff.js';
import { register as registerDump } from './commands/dump.js';
import { register as registerKeygen } from './commands/keygen.js';
import { register as registerRekey } from './commands/rekey.js';
import { register as registerCompletion } from './commands/completion.js';
import { register as registerServe } from './commands/serve.js';
import { register as registerToken } from './commands/token.js';
import { register as registerInit } from './commands/init.js';
import { remotesConfigOption } from './options.js';
import { EXIT_CODE_HELP } from './run.js';

/**
 * The whole command line: every command and option, defined once. main.ts parses argv with it; the
 * command reference, the man pages and the shell completion (scripts/gen-docs.mjs, `completion`) are
 * generated from it, so an option is described in one place.
 */
export function buildProgram(): Command {
  const program = new Command('vertex-backup')
    .description('Consistent, verified backups of a SQLite or PostgreSQL database, a media directory and Docker volumes.')
    .version(VERSION, '-V, --version')
    .option('--backup-dir <dir>', 'backup directory (env BACKUP_DIR, default ./backups)')
    .option('--db-path <file>', 'SQLite database (env DATABASE_PATH or DATABASE_URL, default ./app_data/app_data.db)')
    .option('--storage-path <dir>', 'media directory (env STORAGE_PATH, default ./storage)')
    .option('--config <file>', 'JSON config file (env VERTEX_BACKUP_CONFIG)')
    .option('--env-file <file>', 'read environment variables from this file (default ./.env when present)')
    .option('--json', 'print one machine-readable JSON document on stdout and nothing else there')
    .option('-q, --quiet', 'print only warnings and errors')
    .option('-v, --verbose', 'print details, and stack traces on errors')
    .option('--no-color', 'no colours (also NO_COLOR=1)')
    .option('--notify', 'send the result to Telegram / webhook (failures only unless NOTIFY_ON=always)')
    .option('--metrics-file <path>', "after the run, write Prometheus metrics here for node_exporter's textfile collector (env METRICS_FILE)")
    .option('--progress-interval <seconds>', 'not on a terminal: one progress line every N seconds (default 30, 0 = none)')
    // configures the tool, not one command: before or after the command name (the commands that use it list it too)
    .addOption(remotesConfigOption())
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Examples:
  vertex-backup create --type full           # database + storage, one recovery point
  vertex-backup list
  vertex-backup verify --all
  vertex-backup help <command>               # options and examples of one command (or: <command> --help)
${EXIT_CODE_HELP}`,
    );

  // subcommands inherit these only when they are set before the subcommands are added
  program.exitOverride();
  // --backup-dir, --json… work after the subcommand too: its help lists them
  program.configureHelp({ showGlobalOptions: true });
  program.configureOutput({ outputError: (str, write) => write(str) });

  for (const register of [
    registerInit,
    registerCreate,
    registerList,
    registerStats,
    registerVerify,
    registerRestore,
    registerDrill,
    registerLs,
    registerDiff,
    registerDump,
    registerRotate,
    registerCheck,
    registerSchedule,
    registerNotify,
    registerSync,
    registerRemote,
  ])
    register(program);
  registerServe(program);
  registerToken(program);
  registerKeygen(program);
  registerRekey(program);
  registerCompletion(program);
  return program;
}
