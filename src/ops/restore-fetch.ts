import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { resolveRef } from '../catalog/judge.js';
import { isPageDelta } from '../catalog/page-chain.js';
import type { BackupType } from '../catalog/sidecar.js';
import type { Identity } from '../crypto/age-keys.js';
import { BackupError, usageError } from '../errors.js';
import { type TransferOptions, downloadBackup, listRemoteBackups } from '../offsite/transfer.js';
import type { Remote } from '../remote/remote.js';

// the fetch phase of `restore --from` and of `drill --remote`: a remote backup downloaded and verified on
// the way, then read like a local one

export interface FetchedBackup {
  /** a backup directory layout holding just this backup (and its components); remove it when done */
  dir: string;
  type: BackupType;
  id: string;
  sidecarPath: string;
  bytes: number;
  ms: number;
}

/**
 * Downloads a remote backup into a fresh temporary directory beside the backup directory (same
 * filesystem, so the restore's renames stay cheap), verifying every file against its sidecar on the way.
 */
export async function fetchRemoteBackup(
  remote: Remote,
  ref: string,
  backupDir: string,
  options: TransferOptions & {
    type?: BackupType;
    /** decrypt the manifests an encrypting remote holds with these (restore and drill read the download the same way) */
    identities?: Identity[];
  } = {},
): Promise<FetchedBackup> {
  const started = Date.now();
  const list = await listRemoteBackups(remote, { ...options, type: options.type });
  const b = resolveRef(
    list.filter((x) => x.status === 'ok' || x.status === 'partial'),
    ref,
  );
  if (!b) throw usageError(`no complete backup "${ref}" on ${remote.url}`, 'see what it holds: list the remote', 'remote-list');
  await fsp.mkdir(backupDir, { recursive: true, mode: 0o700 });
  const dir = await fsp.mkdtemp(path.join(backupDir, `.remote-restore-${b.id}-`));
  let bytes = 0;
  try {
    const sidecarPath = await downloadBackup(remote, b.type, b.id, dir, {
      ...options,
      onEvent: (e) => {
        if (e.kind === 'download') bytes += e.size;
        options.onEvent?.(e);
      },
    });
    // an encrypting remote holds sealed sidecars: opened here; its encrypted manifests are then read like
    // a local encrypted backup's, through age (file-manifest.ts), never written out in plaintext
    if (options.identities) await (await import('../offsite/sealed-fields.js')).unsealFetchedSidecars(dir, options.identities);
    // a page delta's state is rebuilt from pages read at offsets: its encrypted chain is decrypted here, once for restore and drill
    if (options.identities?.length && b.type === 'database' && isPageDelta(b.sidecar))
      await (await import('../offsite/remote-encryption.js')).decryptFetchedPageChain(dir, options.identities);
    return { dir, type: b.type, id: b.id, sidecarPath, bytes, ms: Date.now() - started };
  } catch (err) {
    await fsp.rm(dir, { recursive: true, force: true });
    if (err instanceof BackupError && err.code === 'DAMAGED') {
      throw new BackupError('DAMAGED', `${err.message}: refusing to restore from it`, {
        hint: 'try an older backup of the remote',
        remedy: 'remote-older',
        cause: err,
      });
    }
    throw err;
  }
}
