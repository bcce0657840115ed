import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteInfo, testRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { syncToRemote } from '../../src/ops/sync.js';
import type { TransferEvent } from '../../src/offsite/transfer.js';
import { describeRemoteContract, ids, interruptedSync, makeBackupSet, report, roundTrip } from '../helpers/remote-fixtures.js';
import { type WebdavServer, startWebdav, tempDir } from '../helpers/servers.js';

const TOKEN = 'y0_AgAAAAB-oauth-test-token';
let basic: WebdavServer;
let oauth: WebdavServer;
let n = 0;

beforeAll(async () => {
  basic = await startWebdav({ user: 'alice', pass: 's3cret-pw' });
  oauth = await startWebdav({ oauthToken: TOKEN });
});
afterAll(async () => {
  await basic?.stop();
  await oauth?.stop();
});

function basicTarget(pass = 's3cret-pw') {
  const dir = `run${++n}`;
  return {
    open: () => openRemoteDefinition({ name: 'dav', url: `webdav://alice:${pass}@127.0.0.1:${basic.port}/backups/${dir}`, enabled: true, options: {} }, {}),
    interrupt: () => basic.stop(),
    resume: () => basic.restart(),
  };
}

/** Yandex.Disk style: the token travels as `Authorization: OAuth <token>`, read from the config. */
function oauthTarget(token = TOKEN) {
  const dir = `run${++n}`;
  return {
    open: () => openRemoteDefinition({ name: 'yandex', url: `webdav://127.0.0.1:${oauth.port}/${dir}`, enabled: true, options: { token } }, {}),
    interrupt: () => oauth.stop(),
    resume: () => oauth.restart(),
  };
}

describe('webdav:// remote (webdav-server, basic auth)', () => {
  describeRemoteContract({ label: 'webdav basic', target: () => basicTarget() });

  it('transient failures are retried with backoff: a server back within the retries loses nothing', async () => {
    const backupDir = tempDir('retry-local');
    const rels = makeBackupSet(backupDir, ids(1, 5)[0]!);
    const t = basicTarget();
    const remote = await t.open();
    const events: TransferEvent[] = [];
    let stopped = false;
    const result = await syncToRemote(remote, backupDir, {
      retries: 5,
      minTimeoutMs: 150,
      onEvent: (e) => {
        events.push(e);
        if (e.kind === 'upload' && !stopped) {
          stopped = true;
          void basic.stop().then(() => setTimeout(() => void basic.restart(), 400));
        }
      },
    });
    await remote.close();
    expect(events.some((e) => e.kind === 'retry')).toBe(true);
    expect(result.synced.length).toBe(1);
    expect(events.filter((e) => e.kind === 'upload').map((e) => e.rel).sort()).toEqual([...rels].sort());
  });

  it('wrong password: a clear authentication error, the password never shown', async () => {
    const remote = await basicTarget('wrong-password').open();
    const err = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/refused the credentials \(HTTP 401\)/);
    expect(err.message).not.toContain('wrong-password');
    expect(remote.url).not.toContain('wrong-password');
  });
});

describe('webdav:// remote with an OAuth token (Yandex.Disk style)', () => {
  it('round trip, test and info', async () => {
    const t = oauthTarget();
    console.info(report('webdav oauth', await roundTrip(t)));
    const r = await testRemote(t.open, 'yandex');
    expect(r.ok).toBe(true);
    const remote = await t.open();
    const info = await remoteInfo(remote);
    expect(info.backups.ok).toBe(6);
    await remote.close();
  });

  it('interrupted and resumed', async () => {
    await interruptedSync(oauthTarget());
  });

  it('a wrong token is refused clearly and masked', async () => {
    const remote = await oauthTarget('y0_wrong-token-value').open();
    const err = (await remote.stat('x').catch((e: unknown) => e)) as RemoteError;
    expect(err.kind).toBe('auth');
    expect(err.message).not.toContain('y0_wrong-token-value');
    const t = await testRemote(oauthTarget('y0_wrong-token-value').open, 'yandex');
    expect(t.ok).toBe(false);
    expect(JSON.stringify(t)).not.toContain('y0_wrong-token-value');
  });

  it('Yandex.Disk needs a token: YANDEX_DISK_TOKEN or the config', async () => {
    await expect(openRemoteDefinition({ name: 'y', url: 'webdavs://webdav.yandex.ru/backups', enabled: true, options: {} }, {})).rejects.toMatchObject({
      code: 'USAGE',
    });
    // with the variable set it opens (no request is made until used)
    const r = await openRemoteDefinition({ name: 'y', url: 'webdavs://webdav.yandex.ru/backups', enabled: true, options: {} }, { YANDEX_DISK_TOKEN: 'tok-123456' });
    expect(r.url).toBe('webdavs://webdav.yandex.ru/backups');
  });
});
