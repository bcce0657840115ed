import { BackupError, usageError } from '../errors.js';
import { redact, registerSecretsFromEnv, registerSecretsIn } from '../secrets.js';
import { type RemoteDefinition, type RemotesConfig, resolveRemote } from './config.js';
import { type Remote, RemoteError, registeredSchemes, schemeFactory } from './remote.js';
import { retrying } from './retry.js';
// Each scheme registers itself on import; the heavy client libraries load only when a remote opens.
import './file.js';
import './s3.js';
import './webdav.js';
import './sftp.js';
import './rclone.js';
import './rsync.js';
import './exec.js';

export function urlScheme(url: string): string {
  const m = url.match(/^([a-z][a-z0-9+.-]*):/i);
  if (!m)
    throw usageError(
      `not a remote URL: ${url}`,
      `use one of ${registeredSchemes()
        .map((s) => `${s}:`)
        .join(' ')}`,
    );
  return m[1]!.toLowerCase();
}

export async function openRemoteDefinition(def: RemoteDefinition, env: NodeJS.ProcessEnv = process.env): Promise<Remote> {
  const scheme = urlScheme(def.url);
  const factory = schemeFactory(scheme);
  if (!factory) {
    throw usageError(`remote "${def.name}": unsupported scheme "${scheme}:"`, `supported: ${registeredSchemes().join(', ')}`);
  }
  // a URL given on the command line and the variables the schemes read were not registered with the config
  registerSecretsIn(def);
  registerSecretsFromEnv(env);
  try {
    // every call retried on transient errors (an operation may set its own policy with `retrying`)
    return retrying(guard(await factory({ name: def.name, url: def.url, options: def.options, env })));
  } catch (err) {
    throw redactError(err);
  }
}

/** `urlOrName` is a name from the config or a URL given on the command line. */
export async function openRemote(urlOrName: string, config: RemotesConfig, env: NodeJS.ProcessEnv = process.env): Promise<Remote> {
  return openRemoteDefinition(resolveRemote(config, urlOrName), env);
}

/** Secrets must not reach the terminal through an error message a library built from a URL or header. */
function redactError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const message = redact(err.message);
  if (err instanceof RemoteError) {
    if (message === err.message) return err;
    return new RemoteError(err.kind, message, { hint: err.hint, cause: err.cause });
  }
  if (err instanceof BackupError) {
    return message === err.message ? err : new BackupError(err.code, message, { hint: err.hint, remedy: err.remedy, cause: err.cause });
  }
  err.message = message;
  return err;
}

function guard(remote: Remote): Remote {
  return new Proxy(remote, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        try {
          const result = value.apply(target, args);
          return result instanceof Promise ? result.catch((err: unknown) => Promise.reject(redactError(err))) : result;
        } catch (err) {
          throw redactError(err);
        }
      };
    },
  });
}
