import type { Command } from 'commander';
import type { Identity, Recipient } from '../crypto/age-keys.js';
import { BackupError } from '../errors.js';
import type { Context } from './run.js';

/** create's --encrypt/--recipient/--recipients-file, else BACKUP_RECIPIENTS(_FILE); null: not encrypted. */
export async function createRecipients(ctx: Context, cmd: Command): Promise<Recipient[] | null> {
  const o = cmd.opts() as { encrypt?: boolean; recipient?: string[]; recipientsFile?: string };
  const { resolveRecipients } = await import('../crypto/age-settings.js');
  const recipients = resolveRecipients({ recipient: o.recipient, recipientsFile: o.recipientsFile }, ctx.cfg.env);
  if (o.encrypt && !recipients) {
    throw new BackupError('USAGE', '--encrypt: no recipients to encrypt to', {
      hint: 'set BACKUP_RECIPIENTS=age1… (vertex-backup keygen prints one), BACKUP_RECIPIENTS_FILE, or pass --recipient',
    });
  }
  return recipients ?? null;
}

/** Adds --identity to a command that reads encrypted backups (restore, verify, drill, rekey, ls, diff, dump). */
export function identityOption(command: Command): Command {
  return command.option(
    '-i, --identity <file>',
    'age identity file to decrypt encrypted backups (repeatable; env AGE_IDENTITY_FILE; passphrase: AGE_PASSPHRASE_FILE)',
    (v: string, prev: string[] = []) => [...prev, v],
  );
}

/** Reads a passphrase from the terminal without echo (only when there is one). */
async function promptPassphrase(ctx: Context): Promise<string> {
  await ctx.ui.settle();
  const { stdin, stderr } = process;
  stderr.write('Passphrase for encrypted backups (empty to skip): ');
  return new Promise((resolve) => {
    let buf = '';
    stdin.setRawMode?.(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const onData = (d: string) => {
      for (const ch of d) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          stdin.setRawMode?.(false);
          stdin.pause();
          stdin.off('data', onData);
          stderr.write('\n');
          resolve(buf);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode?.(false);
          process.kill(process.pid, 'SIGINT');
          return;
        }
        buf = ch === '\u007f' ? buf.slice(0, -1) : buf + ch;
      }
    };
    stdin.on('data', onData);
  });
}

/**
 * The identities for this run. `needed` says whether anything to read is encrypted: only then, on a
 * terminal and with no key given, is the user asked for a passphrase.
 */
export async function commandIdentities(ctx: Context, cmd: Command, needed = false): Promise<Identity[]> {
  const o = cmd.opts() as { identity?: string[] };
  const { loadIdentities } = await import('../crypto/age-settings.js');
  const interactive = needed && process.stdin.isTTY === true && process.stderr.isTTY === true && !ctx.global.json;
  const ids = await loadIdentities({ identity: o.identity }, ctx.cfg.env);
  if (ids.length || !interactive) return ids;
  return loadIdentities({ identity: o.identity }, ctx.cfg.env, process.cwd(), () => promptPassphrase(ctx));
}

/** Whether the backup `ref` (or a component of it) is encrypted to a passphrase: only then is a prompt useful. */
export async function passphraseNeeded(backupDir: string, ref: string | undefined): Promise<boolean> {
  if (!ref) return false;
  const { findBackup, componentLookup } = await import('../catalog/local-store.js');
  const entry = await findBackup(backupDir, ref).catch(() => undefined);
  if (!entry?.sidecar) return false;
  const lookup = componentLookup(backupDir);
  const entries =
    entry.type === 'full'
      ? await Promise.all((['database', 'storage'] as const).map((t) => (entry.sidecar![t] ? lookup(t, entry.sidecar![t]!) : undefined)))
      : [entry];
  return entries.some((e) => e?.sidecar?.encryption?.recipients.some((r) => !r.startsWith('age1')));
}
