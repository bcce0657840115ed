import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { BackupError } from '../errors.js';

export interface LinkOnTheWay {
  link: string;
  uid: number;
}

/**
 * Every symlink met while resolving `p` the way the kernel does, component by component, links inside
 * link targets included (at most 40, as the kernel allows). A check of `p` alone misses a chain: root's
 * own `storage -> /home/app/storage` is harmless until the app user replaces `/home/app/storage` with
 * a link to a root-only directory. Resolution stops at the first component that does not exist.
 */
export async function symlinksOnTheWay(p: string): Promise<LinkOnTheWay[]> {
  const out: LinkOnTheWay[] = [];
  let pending = path.resolve(p).split('/').filter(Boolean);
  let cur = '/';
  while (pending.length && out.length <= 40) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      cur = path.dirname(cur);
      continue;
    }
    const next = path.join(cur, name);
    const st = await fsp.lstat(next).catch(() => undefined);
    if (!st) break;
    if (!st.isSymbolicLink()) {
      cur = next;
      continue;
    }
    out.push({ link: next, uid: st.uid });
    const to = await fsp.readlink(next).catch(() => '');
    if (to.startsWith('/')) cur = '/';
    pending = [...to.split('/').filter(Boolean), ...pending];
  }
  return out;
}

/**
 * A live path that is a symlink planted by another user is refused: www-data replacing `storage` (or
 * `app.db`) with a link to a root-only directory (or database) would make a restore run as root move
 * that directory aside, or overwrite that database, with www-data's content. A link of our own, or of
 * root, is the operator's (storage on a mounted volume) and is followed; so is a link whose owner also
 * owns what it leads to (nothing gained through it).
 */
export async function refuseForeignLink(p: string, what: 'database' | 'storage'): Promise<void> {
  // every link on the way counts, not only `p`: root's own link may lead through one the app user owns
  const me = process.getuid?.() ?? -1;
  const foreign = (await symlinksOnTheWay(p)).filter((l) => l.uid !== me && l.uid !== 0);
  if (!foreign.length) return;
  const to = await fsp.stat(p).catch(() => undefined);
  const link = foreign.find((l) => !to || to.uid !== l.uid);
  if (!link) return;
  const which = link.link === p ? 'it is' : `${link.link} on the way is`;
  throw new BackupError(
    'USAGE',
    `refusing to restore the ${what} through ${p}: ${which} a symlink owned by uid ${link.uid} that leads to ${to ? `something owned by uid ${to.uid}` : 'nothing'} (${await fsp.readlink(link.link).catch(() => '?')})`,
    { hint: `check who replaced ${p}; set the real ${what} path, or restore into another directory`, remedy: { kind: `foreign-link-${what}`, subject: p } },
  );
}

/** The live storage path must still lead where it led when the backup was staged beside it. */
export async function refuseMovedStorage(live: string, dest: string): Promise<void> {
  const now = (await fsp.lstat(live).catch(() => undefined))?.isSymbolicLink() ? await fsp.realpath(live).catch(() => undefined) : live;
  if (now === dest) return;
  throw new BackupError('USAGE', `refusing to swap the storage: ${live} now leads to ${now ?? 'nothing'}, not ${dest} as when the restore began`, {
    hint: `check who changed ${live} during the restore`,
  });
}
