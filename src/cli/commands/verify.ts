import type { Command } from 'commander';
import type { BackupType } from '../../catalog/sidecar.js';
import { BackupError } from '../../errors.js';
import { commandIdentities, identityOption, passphraseNeeded } from '../encryption-options.js';
import { remotesConfigOption, typeOption } from '../options.js';
import { action } from '../run.js';
import { formatBytes } from '../../human.js';

export function register(program: Command): void {
  const command = program
    .command('verify')
    .argument('[backup]', 'backup id, path to a backup file or sidecar, or "latest"')
    .description('check backups: every checksum, integrity_check of databases, a full read of archives')
    .option('--latest', 'the newest backup of each type (the default)')
    .option('--all', 'every backup')
    .addOption(typeOption())
    .option('--remote <name>', 'verify the copies on this remote (download and hash)')
    .option(
      '--sample <percent>',
      'read about this percentage of the stored bytes, those not read in the current cycle first, so ceil(100/PCT) runs read everything (state in <backup-dir>/.sample-state.json); with --remote: a random sample of the files of each backup',
    )
    .addOption(remotesConfigOption())
    .addHelpText(
      'after',
      `
Exits 3 when a backup is damaged or incomplete.

Examples:
  vertex-backup verify                       # newest backup of each type
  vertex-backup verify --all
  vertex-backup verify 20240101_120000
  vertex-backup verify backups/storage/storage_backup_20240101_120000.json
  vertex-backup verify --sample 15            # nightly: every stored byte read within 7 runs
  vertex-backup verify --remote s3-offsite --all --sample 10
  vertex-backup verify --all --identity ~/backup-key.txt   # encrypted: decrypt and check contents too

Encrypted backups are checked by their ciphertext without a key (the bytes are intact); with
--identity their contents are decrypted and checked as well.`,
    );
  identityOption(command).action(
    action('verify', async (ctx, cmd) => {
      const [ref] = cmd.args as string[];
      const o = cmd.opts() as { latest?: boolean; all?: boolean; type?: BackupType; remote?: string; sample?: string };
      if (o.remote) {
        const samplePercent = o.sample === undefined ? undefined : Number(o.sample);
        if (samplePercent !== undefined && !(samplePercent > 0 && samplePercent <= 100)) {
          throw new BackupError('USAGE', `--sample must be a percentage above 0 and at most 100, got '${o.sample}'`, { argument: true });
        }
        return (await import('../remote-outcomes.js')).remoteVerifyOutcome(ctx, cmd, o.remote, {
          ref: ref === 'latest' ? undefined : ref,
          all: o.all,
          type: o.type,
          samplePercent,
        });
      }
      if (o.sample !== undefined) return sampledVerify(ctx, ref, o);
      const { verifyBackups } = await import('../../ops/verify.js');
      const identities = await commandIdentities(ctx, cmd, await passphraseNeeded(ctx.cfg.backupDir, ref === 'latest' ? undefined : ref));
      const report = await verifyBackups(
        ctx.cfg.backupDir,
        { ref: ref === 'latest' ? undefined : ref, latest: o.latest || ref === 'latest', all: o.all, type: o.type },
        // the configured client (PG_BIN_DIR, PG_DUMP_CONTAINER) reads PostgreSQL dumps
        { signal: ctx.signal, identities, onProgress: (p) => ctx.progress.event(p), config: ctx.cfg },
      );
      const bad = report.results.filter((r) => !r.ok);
      return {
        json: report,
        exitCode: report.ok ? 0 : 3,
        summary: report.ok
          ? `${report.results.filter((r) => !r.inProgress).length} backups verified`
          : `${bad.length} of ${report.results.length} backups damaged: ${bad.map((r) => `${r.type} ${r.id}`).join(', ')}`,
        log: { checked: report.results.map((r) => `${r.type}:${r.id}`), damaged: bad.map((r) => ({ backup: `${r.type}:${r.id}`, problems: r.problems })) },
        human: (ui) => {
          if (!report.results.length) {
            ui.out(`no backups in ${ctx.cfg.backupDir}`);
            return;
          }
          const rows = report.results.map((r) =>
            r.inProgress
              ? [r.type, r.id, ui.c.yellow('in progress'), r.note ?? '']
              : [
                  r.type,
                  r.id,
                  r.ok ? ui.c.green('ok') : ui.c.red('DAMAGED'),
                  r.ok
                    ? // the backup's own size, as list says it; a chain link also reads the archives below it
                      `${formatBytes(r.sizeBytes)}${r.checked > r.sizeBytes && formatBytes(r.checked) !== formatBytes(r.sizeBytes) ? `, ${formatBytes(r.checked)} read with its chain` : ''}${r.encryption === 'ciphertext' ? ' (encrypted: bytes only, no key given)' : r.encryption ? ' (decrypted)' : ''}`
                    : r.problems.join('; '),
                ],
          );
          ui.out(ui.table(['type', 'id', 'result', 'details'], rows));
          if (!report.ok) ui.error(`${bad.length} backup(s) failed verification`);
        },
      };
    }),
  );
}

/** `verify --sample PCT` of the local backup directory: this run's share of the stored files, and the coverage reached. */
async function sampledVerify(
  ctx: import('../run.js').Context,
  ref: string | undefined,
  o: { all?: boolean; latest?: boolean; sample?: string },
): Promise<import('../run.js').Outcome> {
  const { parsePercent, verifySample } = await import('../../ops/sample.js');
  const percent = parsePercent(o.sample!);
  if (ref || o.all || o.latest)
    throw new BackupError('USAGE', '--sample reads its share of every stored file: it takes no backup id, --all or --latest', { argument: true });
  const report = await verifySample(ctx.cfg.backupDir, percent, {
    signal: ctx.signal,
    onFile: (f) => ctx.progress.event({ phase: 'verify', subject: f.rel }),
  });
  const bad = report.results.filter((r) => !r.ok);
  const c = report.coverage;
  const summary = `${report.files_read} files (${formatBytes(report.bytes_read)}) read; coverage ${c.coverage_pct}% of ${formatBytes(c.total_bytes)} after ${c.runs_in_cycle} of ${c.runs_per_cycle} runs`;
  return {
    json: report,
    exitCode: report.ok ? 0 : 3,
    summary: report.ok ? summary : `${bad.length} stored files damaged: ${bad.map((r) => r.problem).join('; ')}`,
    log: {
      sample_pct: percent,
      files_read: report.files_read,
      bytes_read: report.bytes_read,
      coverage_pct: c.coverage_pct,
      damaged: bad.map((r) => ({ backup: `${r.type}:${r.id}`, problems: [r.problem] })),
    },
    human: (ui) => {
      ui.out(`${report.ok ? ui.c.green('✔') : ui.c.red('✘')} ${summary}`);
      if (c.coverage_pct >= 100) ui.out('  every stored byte has been read in this cycle: the next run starts a new one');
      for (const r of bad) ui.error(r.problem!);
    },
  };
}
