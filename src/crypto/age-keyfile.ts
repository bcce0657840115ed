import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { BackupError, toBackupError } from '../errors.js';
import { generateIdentity, identityFileText } from './age-keys.js';

/** Writes a fresh identity to `file`, created 0600 and never over an existing file. */
export async function writeNewIdentity(file: string): Promise<{ file: string; recipient: string }> {
  const abs = path.resolve(file);
  const key = generateIdentity();
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(abs, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new BackupError('USAGE', `refusing to overwrite ${abs}: it may hold the only key to existing backups`, { hint: 'choose another file name' });
    }
    throw new BackupError('USAGE', `cannot create ${abs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    await fh.writeFile(identityFileText(key));
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await fsp.rm(abs, { force: true });
    throw toBackupError(err, `writing ${abs}`);
  }
  await fh.close();
  return { file: abs, recipient: key.recipient };
}
