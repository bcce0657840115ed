import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';

/** How long a remote may stay silent (no byte either way, connecting included) before the call fails. */
export const DEFAULT_REMOTE_TIMEOUT_S = 120;

/** `timeout_seconds` of a remote's settings in milliseconds, or undefined when it is not a positive number. */
export function remoteTimeoutMs(value: unknown): number | undefined {
  if (value === undefined || value === null || value === '') return DEFAULT_REMOTE_TIMEOUT_S * 1000;
  const s = Number(value);
  return Number.isFinite(s) && s > 0 ? s * 1000 : undefined;
}

const DEFAULT_PORT = { 'http:': 80, 'https:': 443 } as const;
const hostPort = (host: string, port: number | string | undefined, protocol: 'http:' | 'https:') =>
  `${protocol}//${host.replace(/^\[|\]$/g, '').toLowerCase()}:${Number(port) || DEFAULT_PORT[protocol]}`;

/**
 * The agents an HTTP remote's client gets, one per protocol, each keep-alive and guarded twice:
 * - a socket fails after `timeoutMs` of silence while a request holds it: a server that accepts and
 *   never answers (or stops halfway through a body) would otherwise hang `sync` forever, since the
 *   HTTP clients under the remotes set no timeout of their own. Node's agent sets the timeout of a free
 *   socket itself (0, or a server's keep-alive hint), so the bound is set again whenever a socket is
 *   handed to a request and when its response begins, and a timeout on a socket in the free list is
 *   left to the agent (it closes it);
 * - a request to any origin but `origin` is refused before a byte is sent: the clients follow
 *   redirects, and node-fetch keeps the Authorization header for another port of the same host or for
 *   a subdomain, so a server (or whoever answers in its place) could collect the password with a 302.
 */
export function remoteAgents(origin: string, timeoutMs: number): { httpAgent: http.Agent; httpsAgent: https.Agent } {
  const allowed = new URL(origin);
  const expected = hostPort(allowed.hostname, allowed.port, allowed.protocol as 'http:' | 'https:');
  const onTimeout = (socket: Socket) => () => {
    if (!(socket as Socket & { _httpMessage?: unknown })._httpMessage) return;
    // ETIMEDOUT: the remotes' error mapping calls it transient (retried with backoff, then reported)
    socket.destroy(Object.assign(new Error(`no answer for ${timeoutMs / 1000} s (timeout_seconds)`), { code: 'ETIMEDOUT' }));
  };
  const arm = (socket: Socket) => {
    socket.setTimeout(timeoutMs);
    if (!socket.listeners('timeout').some((l) => (l as { silence?: boolean }).silence)) {
      socket.on('timeout', Object.assign(onTimeout(socket), { silence: true }));
    }
  };
  const make = <A extends typeof http.Agent>(Base: A, protocol: 'http:' | 'https:') => {
    class GuardedAgent extends (Base as typeof http.Agent) {
      addRequest(req: http.ClientRequest, options: { host?: string; hostname?: string; port?: number | string }): void {
        const to = hostPort(options.hostname ?? options.host ?? '', options.port, protocol);
        if (to !== expected) {
          const err = Object.assign(new Error(`refusing to follow the server to another origin (${to}, not ${expected}): credentials are never sent there`), {
            code: 'ERR_REMOTE_OTHER_ORIGIN',
          });
          // how Node's own agent fails a request it could not get a socket for: 'error', then 'close'
          (req as unknown as { onSocket(s: null, e: Error): void }).onSocket(null, err);
          return;
        }
        // node-fetch clears the socket's timeout when the headers arrive (req.setTimeout(0)): the bound is
        // set again after its listener has run, so a body that stops halfway fails too
        req.once('response', () => process.nextTick(() => req.socket && !req.socket.destroyed && arm(req.socket)));
        (http.Agent.prototype as unknown as { addRequest: (r: unknown, o: unknown) => void }).addRequest.call(this, req, options);
      }
      override createConnection(...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> {
        const socket = (Base.prototype.createConnection as (...a: unknown[]) => Socket).apply(this, args);
        if (socket) arm(socket);
        return socket;
      }
      override reuseSocket(socket: Socket, req: http.ClientRequest): void {
        super.reuseSocket(socket, req);
        arm(socket);
      }
    }
    return new GuardedAgent({ keepAlive: true });
  };
  return { httpAgent: make(http.Agent, 'http:'), httpsAgent: make(https.Agent, 'https:') as unknown as https.Agent };
}
