import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { needs } from '../helpers/optional.js';
import { describeRemoteContract, report, roundTrip } from '../helpers/remote-fixtures.js';
import { type WebdavServer, rcloneObscure, startWebdav, tempDir } from '../helpers/servers.js';

let dav: WebdavServer;
let n = 0;
const scratch = tempDir('rclone-env');
const baseEnv = { ...process.env, XDG_CACHE_HOME: scratch, RCLONE_CONFIG: path.join(scratch, 'rclone.conf') };

/** rclone with a local-disk backend */
function localTarget() {
  const root = path.join(tempDir('rclone-local'), 'backups');
  return {
    open: () => openRemoteDefinition({ name: 'rl', url: `rclone:${root}`, enabled: true, options: {} }, baseEnv),
    interrupt: async () => {},
    resume: async () => {},
  };
}

/** rclone with a WebDAV backend configured through RCLONE_CONFIG_<NAME>_* variables */
function davTarget(pass = 'dav-pass-42') {
  const env = {
    ...baseEnv,
    RCLONE_CONFIG_TDAV_TYPE: 'webdav',
    RCLONE_CONFIG_TDAV_URL: `http://127.0.0.1:${dav.port}`,
    RCLONE_CONFIG_TDAV_VENDOR: 'other',
    RCLONE_CONFIG_TDAV_USER: 'bob',
    RCLONE_CONFIG_TDAV_PASS: rcloneObscure(pass),
  };
  const dir = `run${++n}`;
  return {
    open: () => openRemoteDefinition({ name: 'rd', url: `rclone:tdav:backups/${dir}`, enabled: true, options: {} }, env),
    interrupt: () => dav.stop(),
    resume: () => dav.restart(),
  };
}

needs('rclone', 'rclone').describe('rclone: remote', () => {
  beforeAll(async () => {
    dav = await startWebdav({ user: 'bob', pass: 'dav-pass-42' });
  });
  afterAll(async () => {
    await dav?.stop();
  });

  describeRemoteContract({
    label: 'rclone local',
    target: localTarget,
    interruptible: davTarget, // the WebDAV server behind rclone is stopped mid-sync
    rotationSets: 3, // one process per rclone call: fewer sets keep the file fast
  });

  it('round trip through a WebDAV backend, and remote test', async () => {
    const t = davTarget();
    console.info(report('rclone webdav', await roundTrip(t)));
    expect((await testRemote(t.open, 'rd')).ok).toBe(true);
  });

  it('wrong WebDAV password: a clear authentication error', async () => {
    const remote = await davTarget('not-the-password').open();
    const err = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/refused the credentials/);
  });
});

// runs everywhere: it is about the machine without rclone
it('rclone missing: a clear error naming it', async () => {
  const err = await openRemoteDefinition({ name: 'x', url: 'rclone:remote:path', enabled: true, options: { binary: '/nonexistent/rclone' } }, baseEnv).catch(
    (e: unknown) => e,
  );
  expect(err).toMatchObject({ code: 'USAGE' });
  expect((err as Error).message).toMatch(/rclone is not installed: "\/nonexistent\/rclone" was not found/);
  const viaPath = await openRemoteDefinition({ name: 'x', url: 'rclone:remote:path', enabled: true, options: {} }, { ...baseEnv, PATH: '/nonexistent' }).catch(
    (e: unknown) => e,
  );
  expect((viaPath as Error).message).toMatch(/rclone is not installed/);
});
