import type { Command } from 'commander';
import { action } from '../run.js';

export function register(program: Command): void {
  program
    .command('keygen')
    .description('make a new age identity (private key file, mode 0600) and print its public recipient')
    .requiredOption('-o, --output <file>', 'write the identity here (never overwritten)')
    .addHelpText(
      'after',
      `
The file is the same as age-keygen's: the stock age CLI reads it (age -d -i FILE). Keep it off the
server that makes the backups; give the server only the printed age1… recipient (BACKUP_RECIPIENTS).
Without the identity (or another recipient's), encrypted backups cannot be restored by anyone.

Examples:
  vertex-backup keygen -o ~/backup-key.txt
  BACKUP_RECIPIENTS=age1… vertex-backup create          # on the server: public key only`,
    )
    .action(
      action('keygen', async (_ctx, cmd) => {
        const o = cmd.opts() as { output: string };
        const { writeNewIdentity } = await import('../../crypto/age-keyfile.js');
        const { file, recipient } = await writeNewIdentity(o.output);
        return {
          json: { file, recipient },
          human: (ui) => {
            ui.info(`identity written to ${file} (mode 0600): keep it secret and keep a copy offline`);
            ui.out(`Public key: ${recipient}`);
          },
        };
      }),
    );
}
