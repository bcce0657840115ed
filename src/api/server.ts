import * as fs from 'node:fs';
import * as http from 'node:http';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { getRequestListener } from '@hono/node-server';
import { BackupError } from '../errors.js';
import { type AppOptions, buildApp } from './app.js';

export interface ServeOptions extends AppOptions {
  host?: string;
  port?: number;
  /** listen on this Unix socket instead of TCP (mode 0660) */
  socket?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** allow a non-loopback address without TLS (behind a TLS-terminating proxy on another host) */
  insecureBind?: boolean;
  /** a client has this long to send its request headers (Slowloris), and the whole request */
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** quiet this long after requests or jobs, the heap is collected once (0: never) */
  idleGcMs?: number;
}

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

/** Refuses to expose the API beyond this machine by accident (the Kopia rule: localhost, or TLS). */
export function checkBind(o: Pick<ServeOptions, 'host' | 'socket' | 'tlsCert' | 'tlsKey' | 'insecureBind'>): void {
  if (o.socket) return;
  const host = o.host ?? '127.0.0.1';
  if (!isLoopback(host) && isIP(host) === 0 && host !== 'localhost')
    throw new BackupError('USAGE', `--host must be an IP address, got '${host}'`, { argument: true });
  if ((o.tlsCert && !o.tlsKey) || (o.tlsKey && !o.tlsCert)) throw new BackupError('USAGE', '--tls-cert and --tls-key go together', { argument: true });
  if (!isLoopback(host) && !o.tlsCert && !o.insecureBind)
    throw new BackupError('USAGE', `refusing to serve on ${host} without TLS: tokens would cross the network in clear text`, {
      hint: 'give --tls-cert and --tls-key, listen on 127.0.0.1 behind a TLS proxy, or pass --insecure-bind if a proxy on this network terminates TLS',
      argument: true,
    });
}

export async function startServer(o: ServeOptions): Promise<RunningServer & { jobs: ReturnType<typeof buildApp>['jobs'] }> {
  checkBind(o);
  const { app, jobs } = buildApp(o);
  const listener = getRequestListener(app.fetch);
  const serverOptions: http.ServerOptions = {
    headersTimeout: o.headersTimeoutMs ?? 10_000,
    requestTimeout: o.requestTimeoutMs ?? 60_000,
    keepAliveTimeout: 5_000,
    // how often the timeouts above are enforced (Node's default is 30 s)
    connectionsCheckingInterval: Math.min(1_000, o.headersTimeoutMs ?? 10_000),
    maxHeaderSize: 16 * 1024,
  };
  const tls = !!o.tlsCert;
  const server = tls
    ? // TLS is loaded only when asked for: an idle plain server does not carry it
      (await import('node:https')).createServer({ ...serverOptions, cert: fs.readFileSync(o.tlsCert!), key: fs.readFileSync(o.tlsKey!) }, listener)
    : http.createServer(serverOptions, listener);
  const idle = collectWhenIdle(o.idleGcMs ?? 10_000, () => jobs.running().length > 0);
  server.on('request', idle.touch);
  jobs.on('done', idle.touch);
  // an idle socket is closed, whatever its state (a client that stops reading a response)
  server.setTimeout(o.requestTimeoutMs ?? 60_000);
  server.maxConnections = 512;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new BackupError('USAGE', `cannot listen on ${o.socket ?? `${o.host ?? '127.0.0.1'}:${o.port ?? 8787}`}: ${err.code ?? err.message}`)),
    );
    if (o.socket) {
      fs.rmSync(o.socket, { force: true });
      server.listen(o.socket, () => {
        fs.chmodSync(o.socket!, 0o660);
        resolve();
      });
    } else server.listen(o.port ?? 8787, o.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const url =
    typeof addr === 'string'
      ? `unix:${addr}`
      : `${tls ? 'https' : 'http'}://${(addr as AddressInfo).family === 'IPv6' ? `[${(addr as AddressInfo).address}]` : (addr as AddressInfo).address}:${(addr as AddressInfo).port}`;
  return {
    url,
    jobs,
    close: () =>
      new Promise<void>((resolve) => {
        idle.stop();
        jobs.cancelAll();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * One full garbage collection once the server has been quiet for `quietMs` after some work (and once
 * after start). V8 keeps the young generation a burst grew (up to 3 x 16 MB) and the old-space pages it
 * used until its memory reducer runs, and that starts only after a full collection, which a burst of
 * small requests never causes: after 600 page requests the server stayed at 119 MB for minutes
 * (bench/serve.mjs). A collection while allocation is low also shrinks the young generation back to
 * its first size. It runs only when nothing is being served, so no request waits for it.
 */
type Gc = (options?: { type: 'major' | 'minor'; execution: 'sync' | 'async'; flavor?: 'regular' | 'last-resort' }) => void;

function collectWhenIdle(quietMs: number, busy: () => boolean): { touch: () => void; stop: () => void } {
  const gc = quietMs > 0 ? collector() : undefined;
  if (!gc) return { touch: () => {}, stop: () => {} };
  let last = Date.now();
  let dirty = true; // the start itself: compiling every module left garbage and a grown young generation
  const timer = setInterval(
    () => {
      if (!dirty || Date.now() - last < quietMs || busy()) return;
      dirty = false;
      // 'last-resort': the collection that also gives memory back (V8's reduce-memory flags); a plain
      // one shrinks the young generation only when something was allocated since, which an idle server does not
      gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    },
    Math.max(250, Math.floor(quietMs / 4)),
  );
  timer.unref();
  return {
    touch: () => {
      last = Date.now();
      dirty = true;
    },
    stop: () => clearInterval(timer),
  };
}

/** V8's gc(): from `node --expose-gc`, or exposed now (it is installed into contexts created after the flag). */
function collector(): Gc | undefined {
  const own = (globalThis as { gc?: Gc }).gc;
  if (own) return own;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as Gc) : undefined;
  } catch {
    return undefined;
  }
}
