import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type DirMarker, newMarker, parseMarker } from '../catalog/marker.js';
import { FILE_MODE } from '../fsutil.js';
import { type RemotesConfig, resolveRemote } from '../remote/config.js';
import { openRemoteDefinition } from '../remote/registry.js';
import { type Remote, RemoteError, readSmall } from '../remote/remote.js';

/**
 * `.vertex-backup-remote` at a remote's root: the remote counterpart of the backup directory's marker.
 * `init` writes it and records its id as the remote's `marker_id` in the remotes file; a remote whose
 * definition names an id but that lacks the marker is an unmounted NAS or a wrong bucket/prefix.
 */
export const REMOTE_MARKER = '.vertex-backup-remote';

export async function readRemoteMarker(remote: Remote): Promise<DirMarker | undefined> {
  // stat first: a missing object is a plain null here, and the round trip proves the server answers
  const st = await remote.stat(REMOTE_MARKER);
  if (!st) return undefined;
  return parseMarker((await readSmall(remote, REMOTE_MARKER, 64 * 1024)).toString('utf8'), `${remote.url}/${REMOTE_MARKER}`);
}

/** The remote's marker, written now when it has none (an existing one is kept: its id is recorded). */
export async function markRemote(remote: Remote): Promise<{ marker: DirMarker; existed: boolean }> {
  const existing = await readRemoteMarker(remote);
  if (existing) return { marker: existing, existed: true };
  const marker = newMarker('remote');
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'vertex-marker-'));
  try {
    const file = path.join(dir, REMOTE_MARKER);
    await fsp.writeFile(file, `${JSON.stringify(marker, null, 2)}\n`, { mode: FILE_MODE });
    await remote.put(REMOTE_MARKER, file);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  return { marker, existed: false };
}

/** Throws when `expectedId` is set and the remote lacks that marker. */
export async function checkRemoteMarker(remote: Remote, name: string, expectedId: string | undefined): Promise<void> {
  if (!expectedId) return;
  const marker = await readRemoteMarker(remote);
  if (!marker) {
    throw new RemoteError(
      'fatal',
      `remote ${name} (${remote.url}) has no ${REMOTE_MARKER} (marker_id ${expectedId}): is the disk or share mounted, the bucket or path right?`,
      {
        hint: 'mount it or fix the URL; nothing was written. A new empty location on purpose: vertex-backup init --remote NAME=URL marks it',
      },
    );
  }
  if (marker.id !== expectedId) {
    throw new RemoteError('fatal', `remote ${name} (${remote.url}) is marked ${marker.id}, but its marker_id is ${expectedId}: another set-up's location`, {
      hint: 'fix the URL, or set marker_id to the id in its .vertex-backup-remote',
    });
  }
}

/**
 * Opens a configured remote and, when `init` marked it (`marker_id`), checks the marker is still there:
 * else an unmounted NAS or a wrong bucket would be filled (sync) or read as empty (list, check) without a
 * word. Every way in (the CLI, serve) opens remotes through here.
 */
export async function openMarkedRemote(remotes: RemotesConfig, nameOrUrl: string, env: NodeJS.ProcessEnv): Promise<Remote> {
  const def = resolveRemote(remotes, nameOrUrl);
  const remote = await openRemoteDefinition(def, env);
  const markerId = def.options.marker_id;
  if (typeof markerId === 'string' && markerId) {
    try {
      await checkRemoteMarker(remote, def.name, markerId);
    } catch (err) {
      await remote.close().catch(() => {});
      throw err;
    }
  }
  return remote;
}
