import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { parseRsyncUrl } from '../../src/remote/rsync.js';
import { needs } from '../helpers/optional.js';
import { describeRemoteContract } from '../helpers/remote-fixtures.js';
import { type SshServer, startSshd, tempDir } from '../helpers/servers.js';

const rsync = needs('rsync', 'rsync');
const sshd = needs('/usr/sbin/sshd', 'openssh-server');

it('rsync URLs: both notations', () => {
  expect(parseRsyncUrl('rsync:backup@nas.example:/srv/backups')).toEqual({ user: 'backup', host: 'nas.example', path: '/srv/backups' });
  expect(parseRsyncUrl('rsync:nas:rel/dir')).toEqual({ user: undefined, host: 'nas', path: 'rel/dir' });
  expect(parseRsyncUrl('rsync://backup@127.0.0.1:2222/srv/b%20x')).toEqual({ user: 'backup', host: '127.0.0.1', port: 2222, path: '/srv/b x' });
  expect(() => parseRsyncUrl('rsync:nohostpath')).toThrow(/not an rsync remote URL/);
});

(rsync.available ? sshd : rsync).describe('rsync: remote (OpenSSH sshd + rsync on 127.0.0.1)', () => {
  let srv: SshServer;
  let n = 0;
  beforeAll(async () => {
    srv = await startSshd();
  });
  afterAll(async () => {
    await srv?.stop();
  });

  function target(options: Record<string, unknown> = {}, dirName?: string, form: 'long' | 'short' = 'short') {
    const dir = path.join(srv.root, dirName ?? `run${++n}`);
    const url = form === 'short' ? `rsync:${srv.user}@127.0.0.1:${dir}` : `rsync://${srv.user}@127.0.0.1:${srv.port}${dir.split('/').map(encodeURIComponent).join('/')}`;
    return {
      dir,
      open: () =>
        openRemoteDefinition({ name: 'box', url, enabled: true, options: { port: srv.port, private_key: srv.userKey, known_hosts: srv.knownHosts, ...options } }, process.env),
      interrupt: () => srv.stop(),
      resume: () => srv.restart(),
    };
  }

  describeRemoteContract({
    label: 'rsync (sshd)',
    target: () => target(),
    // a transfer slow enough to be cut in the middle on a machine where 4 MiB take a few ms
    interruptible: () => target({ flags: ['--bwlimit=2048'] }),
    rotationSets: 3,
    afterRoundTrip: async (t) => {
      expect((await testRemote(() => t.open(), 'box')).ok).toBe(true);
    },
  });

  it('names with spaces, quotes, a newline and wildcards pass intact (no shell anywhere)', async () => {
    const odd = `odd dir 'q' "dq" $(touch pwned) *[x]?\nline2`;
    const t = target({}, odd, 'long');
    const remote = await t.open();
    try {
      const local = path.join(tempDir('rsync-odd'), 'f');
      fs.writeFileSync(local, 'hello');
      const name = `sub dir/it's a "file" \\ *?[1]\nx.json`;
      await remote.put(name, local);
      expect(fs.readFileSync(path.join(t.dir, 'sub dir', `it's a "file" \\ *?[1]\nx.json`), 'utf8')).toBe('hello');
      expect(fs.existsSync(path.join(srv.root, 'pwned'))).toBe(false);
      const fresh = await t.open(); // a new listing, read from the server
      expect(await fresh.list('')).toEqual([{ path: name, size: 5 }]);
      const back = path.join(tempDir('rsync-odd-back'), 'g');
      await fresh.get(name, back);
      expect(fs.readFileSync(back, 'utf8')).toBe('hello');
      await fresh.delete(name);
      await fresh.close();
      expect(await (await t.open()).list('')).toEqual([]);
    } finally {
      await remote.close();
    }
  });

  it('a changed host key is refused; an unknown one only with accept_unknown_host, then remembered', async () => {
    const kh = path.join(tempDir('rsync-kh'), 'known_hosts');
    const unknown = (await target({ known_hosts: kh }).open().catch((e: unknown) => e)) as RemoteError;
    expect(unknown).toBeInstanceOf(RemoteError);
    expect(unknown.kind).toBe('auth');
    expect(unknown.message).toMatch(/unknown SSH host \[127\.0\.0\.1\]:\d+ \(SHA256:/);
    const accepted = await target({ known_hosts: kh, accept_unknown_host: true }).open();
    expect(await accepted.list('')).toEqual([]); // ssh itself accepts the recorded key
    fs.writeFileSync(kh, `[127.0.0.1]:${srv.port} ${srv.otherKeyLine}\n`);
    const changed = (await target({ known_hosts: kh, accept_unknown_host: true }).open().catch((e: unknown) => e)) as RemoteError;
    expect(changed.kind).toBe('auth');
    expect(changed.message).toMatch(/does not match/);
  });

  it('a key the server does not know: a clear authentication error', async () => {
    const remote = await target({ private_key: srv.wrongKey }).open();
    const err = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/refused the login/);
  });

  it('rsync missing on the remote host: says so', async () => {
    const remote = await target({ rsync_path: '/nonexistent/rsync' }).open();
    const err = (await remote.list('').catch((e: unknown) => e)) as RemoteError;
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toMatch(/rsync is not installed on /);
    expect(err.hint).toMatch(/rsync_path/);
  });

  it('permission denied on the remote path: an error that names it', async () => {
    const locked = path.join(srv.root, `locked${++n}`);
    fs.mkdirSync(locked, { mode: 0o500 });
    const remote = await openRemoteDefinition(
      { name: 'box', url: `rsync:${srv.user}@127.0.0.1:${locked}/sub`, enabled: true, options: { port: srv.port, private_key: srv.userKey, known_hosts: srv.knownHosts } },
      process.env,
    );
    const local = path.join(tempDir('rsync-perm'), 'f');
    fs.writeFileSync(local, 'x');
    const err = (await remote.put('database/a.db', local).catch((e: unknown) => e)) as RemoteError;
    fs.chmodSync(locked, 0o700);
    if (process.getuid?.() === 0) return; // root writes anywhere: nothing to refuse
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.kind).toBe('auth');
    expect(err.message).toMatch(/permission denied on the remote path/);
  });
});

it('rsync missing here: a clear error naming it', async () => {
  const err = await openRemoteDefinition({ name: 'x', url: 'rsync:h:/p', enabled: true, options: { binary: '/nonexistent/rsync' } }, process.env).catch((e: unknown) => e);
  expect(err).toMatchObject({ code: 'USAGE' });
  expect((err as Error).message).toMatch(/rsync is not installed: "\/nonexistent\/rsync" was not found/);
});
