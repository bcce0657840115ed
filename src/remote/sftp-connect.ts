import type { Client, ConnectConfig, SFTPWrapper } from 'ssh2';
import type { KnownHosts } from './known-hosts.js';
import { RemoteError, errorMessage, isTransientNetworkError } from './remote.js';

export interface SftpLogin {
  host: string;
  port: number;
  username: string;
  password?: string;
  privateKey?: Buffer;
  passphrase?: string;
  agent?: string;
  readyTimeoutMs: number;
}

/** One SSH connection with its SFTP channel. */
export interface SftpSession {
  ssh: Client;
  sftp: SFTPWrapper;
  closed: Promise<never>; // rejects when the connection goes away
}

/** Logs in and opens the SFTP subsystem; every failure is a RemoteError that says what to check. */
export async function connectSftp(login: SftpLogin, knownHosts: KnownHosts): Promise<SftpSession> {
  const { Client } = (await import('ssh2')).default;
  knownHosts.refusal = undefined;
  const ssh = new Client();
  // errors after the login (or a second one during it) arrive as events; unheard they would crash the
  // process: a dead connection shows up as a failed request and through `closed`
  ssh.on('error', () => {});
  let lost: (err: Error) => void = () => {};
  const closed = new Promise<never>((_, reject) => {
    lost = reject;
  });
  closed.catch(() => {}); // observed through Promise.race; nobody may be waiting right now
  const onClose = () => lost(Object.assign(new Error('the SFTP connection was closed'), { code: 'ECONNRESET' }));
  let sftp: SFTPWrapper;
  try {
    sftp = await new Promise<SFTPWrapper>((resolve, reject) => {
      ssh.once('error', reject);
      ssh.once('close', () => reject(new Error('the connection closed during the login')));
      ssh.once('ready', () => ssh.sftp((err, channel) => (err ? reject(err) : resolve(channel))));
      ssh.connect({
        host: login.host,
        port: login.port,
        username: login.username,
        password: login.password || undefined,
        privateKey: login.privateKey,
        passphrase: login.passphrase,
        agent: login.agent,
        hostVerifier: knownHosts.verify,
        readyTimeout: login.readyTimeoutMs,
      } satisfies ConnectConfig);
    });
  } catch (err) {
    ssh.end();
    throw loginError(err, login, knownHosts);
  }
  ssh.on('close', onClose);
  ssh.on('end', onClose);
  sftp.on('close', onClose);
  await knownHosts.recordLearned();
  return { ssh, sftp, closed };
}

function loginError(err: unknown, login: SftpLogin, knownHosts: KnownHosts): RemoteError {
  if (knownHosts.refusal) return knownHosts.refusal;
  const msg = errorMessage(err);
  if (/authentication methods failed|auth/i.test(msg)) {
    return new RemoteError('auth', `the SFTP server at ${login.host}:${login.port} refused the login of "${login.username}"`, {
      cause: err,
      hint: 'check private_key/passphrase or password in the remotes config (or SFTP_PASSWORD)',
    });
  }
  const kind = isTransientNetworkError(err) ? 'transient' : 'fatal';
  return new RemoteError(kind, `cannot connect to SFTP server ${login.host}:${login.port}: ${msg}`, { cause: err });
}
