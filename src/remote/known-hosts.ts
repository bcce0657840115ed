import { createHash, createHmac } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { RemoteError } from './remote.js';

/**
 * OpenSSH's known_hosts, read the way ssh reads it: hashed (`|1|salt|hash`) and wildcard host patterns,
 * negations, `[host]:port` for other ports, `@revoked`. A changed key (of any type) is always refused; an unknown host
 * only with accept_unknown_host, which records it (trust on first use).
 */
export type HostKeyVerdict = 'match' | 'mismatch' | 'unknown';

function hostPatternMatches(pattern: string, host: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(host).digest('base64') === hash;
  }
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(host);
}

function keyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

function hostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function checkKnownHost(knownHosts: string, host: string, port: number, key: Buffer): HostKeyVerdict {
  const name = hostName(host, port);
  const b64 = key.toString('base64');
  // a host known under any key type is known: a server offering a key of another type is a changed
  // host (an impostor that lacks the known key can offer a fresh one of another type), never unknown
  let known = false;
  for (const raw of knownHosts.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/\s+/);
    if (fields[0]?.startsWith('@')) {
      if (fields[0] === '@revoked' && fields[3] === b64) return 'mismatch';
      continue;
    }
    const [hosts, ktype, kdata] = fields;
    if (!hosts || !ktype || !kdata) continue;
    const patterns = hosts.split(',');
    const negated = patterns.some((p) => p.startsWith('!') && hostPatternMatches(p.slice(1), name));
    if (negated || !patterns.some((p) => !p.startsWith('!') && hostPatternMatches(p, name))) continue;
    if (kdata === b64) return 'match';
    known = true;
  }
  return known ? 'mismatch' : 'unknown';
}

function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * The host-key check of one remote across its connections. `verify` runs inside the handshake and
 * must answer synchronously; `refusal` says why it said no, and `recordLearned` writes a key accepted
 * on first use once the login has succeeded.
 */
export class KnownHosts {
  refusal: RemoteError | undefined;
  private learned: string | undefined;

  private constructor(
    private text: string,
    private readonly file: string,
    private readonly host: string,
    private readonly port: number,
    private readonly acceptUnknown: boolean,
  ) {}

  static async load(file: string, host: string, port: number, acceptUnknown: boolean): Promise<KnownHosts> {
    return new KnownHosts(await fsp.readFile(file, 'utf8').catch(() => ''), file, host, port, acceptUnknown);
  }

  readonly verify = (key: Buffer): boolean => {
    this.refusal = undefined;
    const verdict = checkKnownHost(this.text, this.host, this.port, key);
    if (verdict === 'match') return true;
    const name = hostName(this.host, this.port);
    if (verdict === 'mismatch') {
      this.refusal = new RemoteError('auth', `the host key of ${name} (${fingerprint(key)}) does not match ${this.file}: refusing to connect`, {
        hint: 'if the server was reinstalled, remove its old line from known_hosts (ssh-keygen -R); otherwise this may be an attack',
      });
      return false;
    }
    if (this.acceptUnknown) {
      this.learned = `${name} ${keyType(key)} ${key.toString('base64')}\n`;
      return true;
    }
    this.refusal = new RemoteError('auth', `unknown SFTP host ${name} (${fingerprint(key)}): not in ${this.file}`, {
      hint: `check the fingerprint, then add it (ssh-keyscan -p ${this.port} ${this.host} >> ${this.file}) or set "accept_unknown_host": true once`,
    });
    return false;
  };

  async recordLearned(): Promise<void> {
    if (!this.learned) return;
    await fsp.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await fsp.appendFile(this.file, this.learned, { mode: 0o600 });
    this.text += this.learned;
    this.learned = undefined;
  }
}
