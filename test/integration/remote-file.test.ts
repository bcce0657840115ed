import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testRemote, remoteInfo } from '../../src/ops/sync.js';
import { loadRemotesConfig, resolveRemote } from '../../src/remote/config.js';
import { maskSecrets } from '../../src/secrets.js';
import { openRemote, openRemoteDefinition } from '../../src/remote/registry.js';
import { describeRemoteContract } from '../helpers/remote-fixtures.js';
import { tempDir } from '../helpers/servers.js';

function fileTarget() {
  const root = path.join(tempDir('file-remote'), 'nas', 'backups');
  // the share is mounted: only the last directory of a remote's path is ever created (issue 29)
  fs.mkdirSync(path.dirname(root));
  const url = pathToFileURL(root).href;
  return {
    root,
    open: () => openRemoteDefinition({ name: 'nas', url, enabled: true, options: {} }),
    // a NAS that goes away mid-transfer: the mount point vanishes under the writer
    interrupt: async () => fs.renameSync(root, `${root}.away`),
    resume: async () => fs.renameSync(`${root}.away`, root),
  };
}

describe('file:// remote', () => {
  describeRemoteContract({ label: 'file', target: fileTarget });

  it('remote test and info', async () => {
    const t = fileTarget();
    const r = await testRemote(t.open, 'nas');
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.step)).toEqual(['connect', 'write', 'stat', 'read', 'delete']);
    expect(fs.readdirSync(t.root)).toEqual([]); // the probe is gone
    const remote = await t.open();
    const info = await remoteInfo(remote);
    expect(info.space.free).toBeGreaterThan(0);
    expect(info.objects).toBe(0);
    await remote.close();
  });
});

describe('remotes config', () => {
  const write = (mode: number, data: unknown) => {
    const file = path.join(tempDir('cfg'), 'remote_storage.json');
    fs.writeFileSync(file, JSON.stringify(data), { mode });
    fs.chmodSync(file, mode);
    return file;
  };
  const secretConfig = {
    remotes: {
      nas: { url: 'file:///mnt/nas/backups' },
      dav: { url: 'webdavs://alice:hunter2-pass@cloud.example/remote.php/dav', enabled: false },
      s3: { url: 's3://bucket/prefix', access_key_id: 'AKIAEXAMPLE', secret_access_key: 'very-secret-key' },
    },
    yandex_disk: { enabled: true, oauth_token: 'y0_AgAAAAA-token-value', remote_path: '/vertex' },
    google_drive: { enabled: false, credentials_path: '/x.json' },
  };

  it('refuses a file with secrets readable by group or others', async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const file = write(mode, secretConfig);
      await expect(loadRemotesConfig(file)).rejects.toMatchObject({ code: 'USAGE', hint: `chmod 600 ${file}` });
    }
    const ok = await loadRemotesConfig(write(0o600, secretConfig));
    expect(ok.remotes.map((r) => r.name).sort()).toEqual(['dav', 'nas', 's3', 'yandex_disk']);
    // a file without secrets may be world-readable
    await expect(loadRemotesConfig(write(0o644, { remotes: { nas: { url: 'file:///x' } } }))).resolves.toBeTruthy();
  });

  it('reads the seed format and masks every secret', async () => {
    const cfg = await loadRemotesConfig(write(0o600, secretConfig));
    const y = resolveRemote(cfg, 'yandex_disk');
    expect(y.url).toBe('webdavs://webdav.yandex.ru/vertex');
    expect(cfg.warnings.join()).toMatch(/google_drive.*not supported/);
    const shown = JSON.stringify(maskSecrets(cfg.remotes));
    for (const secret of ['hunter2-pass', 'very-secret-key', 'y0_AgAAAAA-token-value']) expect(shown).not.toContain(secret);
    expect(shown).toContain('alice:***@cloud.example');
    expect(cfg.remotes.find((r) => r.name === 'dav')!.enabled).toBe(false);
  });

  it('a malformed remotes section is a usage error naming what is wrong', async () => {
    for (const [data, message] of [
      [{ remotes: [] }, /"remotes" must be an object/],
      [{ remotes: 'file:///x' }, /"remotes" must be an object/],
      [{ remotes: { nas: { path: '/x' } } }, /remote "nas" needs a "url" string/],
      [{ remotes: { nas: { url: 5 } } }, /remote "nas" needs a "url" string/],
    ] as const) {
      await expect(loadRemotesConfig(write(0o600, data))).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(message) });
    }
  });

  it('a missing config is empty unless required; unknown names and schemes are usage errors', async () => {
    const missing = path.join(tempDir('cfg'), 'none.json');
    const cfg = await loadRemotesConfig(missing);
    expect(cfg.remotes).toEqual([]);
    await expect(loadRemotesConfig(missing, { required: true })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(openRemote('nope', cfg)).rejects.toMatchObject({ code: 'USAGE' });
    await expect(openRemote('ftp://host/x', cfg)).rejects.toThrow(/unsupported scheme "ftp:"/);
  });
});
