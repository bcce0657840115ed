import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  /** path and query, as the client sent them */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** the body parsed as JSON, or as a form (application/x-www-form-urlencoded), when it is one */
  json?: unknown;
  form?: Record<string, string>;
  at: number;
}

export interface Reply {
  status?: number;
  body?: string | object;
  headers?: Record<string, string>;
  /** never answer: for timeout tests */
  hang?: boolean;
  delayMs?: number;
}

export type Handler = (req: RecordedRequest, index: number) => Reply | undefined;

export interface Recorder {
  /** http://127.0.0.1:PORT */
  url: string;
  requests: RecordedRequest[];
  setHandler(h: Handler): void;
  /** resolves once at least `n` requests arrived; rejects after `timeoutMs` */
  waitFor(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  close(): Promise<void>;
}

/**
 * A real HTTP server on loopback that records every request and answers as told (default: 200 with
 * Telegram's {"ok":true}). Reusable for Telegram, webhooks, healthcheck pings, remote backends.
 */
export async function startRecorder(handler?: Handler): Promise<Recorder> {
  let current: Handler = handler ?? (() => undefined);
  const requests: RecordedRequest[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const hanging = new Set<http.ServerResponse>();

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, at: Date.now() };
      const type = String(req.headers['content-type'] ?? '');
      if (type.includes('json')) {
        try {
          rec.json = JSON.parse(body);
        } catch {
          /* recorded as text */
        }
      } else if (type.includes('x-www-form-urlencoded')) {
        rec.form = Object.fromEntries(new URLSearchParams(body));
      }
      const index = requests.push(rec) - 1;
      for (const w of [...waiters]) {
        if (requests.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
      const reply = current(rec, index) ?? {};
      if (reply.hang) {
        hanging.add(res);
        return;
      }
      const send = () => {
        const payload = reply.body === undefined ? { ok: true, result: {} } : reply.body;
        const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
        res.writeHead(reply.status ?? 200, { 'content-type': typeof payload === 'string' ? 'text/plain' : 'application/json', ...reply.headers });
        res.end(text);
      };
      if (reply.delayMs) setTimeout(send, reply.delayMs);
      else send();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    setHandler(h) {
      current = h;
    },
    waitFor(n, timeoutMs = 10_000) {
      if (requests.length >= n) return Promise.resolve(requests);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`expected ${n} requests, got ${requests.length} within ${timeoutMs} ms`)), timeoutMs);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve(requests);
          },
        });
      });
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
