import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { remoteInfo, testRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { needs } from '../helpers/optional.js';
import { describeRemoteContract, report, roundTrip } from '../helpers/remote-fixtures.js';
import { type RcloneServer, startRcloneServe, startSshd, tempDir } from '../helpers/servers.js';
import { type SftpTestServer, startSftpServer } from '../helpers/sftp-server.js';

/** The same contract against every SFTP server: the one in this process always, OpenSSH's when installed. */
function sftpContract(label: string, start: () => Promise<SftpTestServer>, opts: { password: boolean }) {
  let srv: SftpTestServer;
  let n = 0;
  beforeAll(async () => {
    srv = await start();
  });
  afterAll(async () => {
    await srv?.stop();
  });

  function target(options: Record<string, unknown> = {}) {
    const dir = `run${++n}`;
    return {
      // '//' makes the path absolute (relative paths start at the login directory)
      url: `sftp://${srv.user}@127.0.0.1:${srv.port}/${srv.root}/${dir}`,
      open() {
        return openRemoteDefinition({ name: 'box', url: this.url, enabled: true, options: { private_key: srv.userKey, known_hosts: srv.knownHosts, ...options } }, {});
      },
      interrupt: () => srv.stop(),
      resume: () => srv.restart(),
    };
  }

  describeRemoteContract({
    label: `sftp (${label})`,
    target: () => target(),
    afterRoundTrip: async (t) => {
      expect((await testRemote(() => t.open(), 'box')).ok).toBe(true);
      const remote = await t.open();
      const info = await remoteInfo(remote);
      if (srv.statvfs) expect(info.space.free).toBeGreaterThan(0); // statvfs@openssh.com
      else expect(info.space.free).toBeUndefined();
      expect(info.backups.ok).toBe(6);
      await remote.close();
    },
  });

  it('a key the server does not know: a clear authentication error', async () => {
    const err = (await target({ private_key: srv.wrongKey }).open().catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toContain(`refused the login of "${srv.user}"`);
  });

  it('an unknown host is refused unless accepted; then it is remembered; a changed key is always refused', async () => {
    const kh = path.join(tempDir('kh'), 'known_hosts');
    const err = (await target({ known_hosts: kh }).open().catch((e: unknown) => e)) as RemoteError;
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/unknown SFTP host \[127\.0\.0\.1\]:\d+ \(SHA256:/);
    expect(err.hint).toMatch(/ssh-keyscan/);
    const accepted = await target({ known_hosts: kh, accept_unknown_host: true }).open();
    await accepted.close();
    expect(fs.readFileSync(kh, 'utf8')).toContain(srv.hostKeyLine.split(' ').slice(1).join(' '));
    const again = await target({ known_hosts: kh }).open(); // now known, no flag needed
    await again.close();
    // same host, different key of the same type: refused even with accept_unknown_host
    fs.writeFileSync(kh, `[127.0.0.1]:${srv.port} ${srv.otherKeyLine}\n`);
    const changed = (await target({ known_hosts: kh, accept_unknown_host: true }).open().catch((e: unknown) => e)) as RemoteError;
    expect(changed.kind).toBe('auth');
    expect(changed.message).toMatch(/does not match/);
  });

  if (!opts.password) return;
  describe('password authentication', () => {
    const open = (pass: string, rel = 'backups') =>
      openRemoteDefinition(
        { name: 'pw', url: `sftp://${srv.user}@127.0.0.1:${srv.port}/${rel}`, enabled: true, options: { password: pass, known_hosts: srv.knownHosts } },
        {},
      );

    it('round trip with a password, into the login directory', async () => {
      const m = await roundTrip({ open: () => open(srv.password!), interrupt: async () => {}, resume: async () => {} });
      console.info(report(`sftp (${label}, password)`, m));
    });

    it('a wrong password: a clear authentication error, the password masked', async () => {
      const err = (await open('wrong-password-123').catch((e: unknown) => e)) as RemoteError;
      expect(err).toBeInstanceOf(RemoteError);
      expect(err.kind).toBe('auth');
      expect(err.message).toContain(`refused the login of "${srv.user}"`);
      expect(err.message).not.toContain('wrong-password-123');
    });
  });
}

describe('sftp:// remote (in-process ssh2 server, key and password authentication)', () => {
  sftpContract('ssh2 server', () => startSftpServer(), { password: true });
});

needs('/usr/sbin/sshd', 'openssh-server').describe('sftp:// remote (OpenSSH sshd, key authentication)', () => {
  sftpContract('sshd', startSshd, { password: false }); // the test sshd takes keys only
});

needs('rclone', 'rclone').describe('sftp:// remote (rclone serve sftp, password authentication)', () => {
  let srv: RcloneServer;
  beforeAll(async () => {
    srv = await startRcloneServe('sftp');
  });
  afterAll(async () => {
    await srv?.stop();
  });
  const open = (pass: string) =>
    openRemoteDefinition(
      { name: 'pw', url: `sftp://${srv.user}@127.0.0.1:${srv.port}/backups`, enabled: true, options: { password: pass, known_hosts: path.join(srv.dataDir, '..', `kh-${srv.port}`), accept_unknown_host: true } },
      {},
    );

  it('round trip with a password', async () => {
    const m = await roundTrip({ open: () => open(srv.pass), interrupt: async () => {}, resume: async () => {} });
    console.info(report('sftp (rclone serve, password)', m));
  });

  it('a wrong password: a clear authentication error, the password masked', async () => {
    const err = (await open('wrong-password-123').catch((e: unknown) => e)) as RemoteError;
    expect(err.kind).toBe('auth');
    expect(err.message).not.toContain('wrong-password-123');
  });
});
