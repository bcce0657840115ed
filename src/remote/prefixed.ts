import type { Readable } from 'node:stream';
import type { Remote, RemoteEntry, SpaceInfo, ObjectOptions } from './remote.js';

/**
 * A remote seen from one of its subdirectories: each Docker volume is a backup directory of its own
 * (`volumes/<name>/` inside the local one), and it lives under the same path on every remote, so the
 * layout one level down is exactly a remote's. A wrapper, not a scheme: it works over every scheme.
 */
export function underPrefix(remote: Remote, prefix: string): Remote {
  const base = prefix.replace(/^\/+|\/+$/g, '');
  const full = (rel: string) => (rel ? `${base}/${rel}` : base);
  const url = `${remote.url.replace(/\/+$/, '')}/${base}`;
  return {
    scheme: remote.scheme,
    url,
    reportsProgress: remote.reportsProgress,
    put: (rel: string, localFile: string, options?: ObjectOptions) => remote.put(full(rel), localFile, options),
    get: (rel: string, localFile: string, options?: ObjectOptions) => remote.get(full(rel), localFile, options),
    read: (rel: string, options?: { signal?: AbortSignal }): Promise<Readable> => remote.read(full(rel), options),
    list: async (p = ''): Promise<RemoteEntry[]> => {
      const start = `${base}/`;
      return (await remote.list(full(p))).filter((e) => e.path.startsWith(start)).map((e) => ({ ...e, path: e.path.slice(start.length) }));
    },
    stat: async (rel: string) => {
      const e = await remote.stat(full(rel));
      return e && { ...e, path: rel };
    },
    delete: (rel: string) => remote.delete(full(rel)),
    space: (): Promise<SpaceInfo> => remote.space(),
    close: () => remote.close(),
  };
}
