import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

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
