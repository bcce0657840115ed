import pRetry, { AbortError } from 'p-retry';
import { type Remote, RemoteError } from './remote.js';

/**
 * Retries as a property of the remote, not of each call site: every call of a remote opened through
 * the registry is retried on transient errors (a dropped connection, a timeout, a 5xx) with exponential
 * backoff; anything else (a refused password, a missing object) fails at once. An operation sets its
 * own policy (sync --retries, tests that want none) by wrapping the remote again with `retrying`.
 */
export interface RetryOptions {
  retries?: number; // attempts after the first, on transient errors only (default 4)
  minTimeoutMs?: number; // first backoff delay (default 1000, doubling)
}

export interface RetryEvent {
  kind: 'retry';
  rel: string;
  attempt: number;
  error: string;
}

export interface RetryPolicy extends RetryOptions {
  signal?: AbortSignal;
  onEvent?: (e: RetryEvent) => void;
}

export interface RetryingRemote extends Remote {
  /**
   * One attempt is the whole of `fn`: a read and the consumption of its stream (a download hashed as it
   * is written) starts over when the stream is cut off midway. `fn` gets the remote without retries.
   */
  attempt<T>(rel: string, fn: (remote: Remote) => Promise<T>): Promise<T>;
}

const INNER = Symbol('remote without retries');
// the calls that talk to the server; `close`, `url` and the rest pass through
const RETRIED = new Set<PropertyKey>(['put', 'get', 'read', 'list', 'stat', 'delete', 'space']);

export async function withRetries<T>(rel: string, fn: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  return pRetry(
    async () => {
      try {
        return await untilAborted(fn(), policy.signal);
      } catch (err) {
        if (err instanceof RemoteError && err.kind === 'transient') throw err;
        throw new AbortError(err as Error);
      }
    },
    {
      retries: policy.retries ?? 4,
      minTimeout: policy.minTimeoutMs ?? 1000,
      factor: 2,
      signal: policy.signal,
      onFailedAttempt: (e) => {
        if (e.retriesLeft > 0) policy.onEvent?.({ kind: 'retry', rel, attempt: e.attemptNumber, error: e.message });
      },
    },
  );
}

/**
 * `p`, or the abort's reason as soon as `signal` fires: SIGTERM ends a run at once even while a call
 * waits on a server that never answers (the caller's close() then cuts its connection). A rejection of
 * `p` after that is observed, never unhandled.
 */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** `remote` with `policy` for every call; a remote that already retries gets the new policy instead. */
export function retrying(remote: Remote, policy: RetryPolicy = {}): RetryingRemote {
  const inner = ((remote as Partial<Record<typeof INNER, Remote>>)[INNER] ?? remote) as Remote;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === INNER) return target;
      if (prop === 'attempt') return <T>(rel: string, fn: (r: Remote) => Promise<T>) => withRetries(rel, () => fn(target), policy);
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      if (!RETRIED.has(prop)) return value.bind(target);
      return (...args: unknown[]) => withRetries(typeof args[0] === 'string' && args[0] ? args[0] : '/', () => value.apply(target, args), policy);
    },
  }) as RetryingRemote;
}
