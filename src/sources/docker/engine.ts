import * as http from 'node:http';
import type { Readable } from 'node:stream';
import { BackupError, usageError } from '../../errors.js';

/**
 * A small Docker Engine API client over the daemon's unix socket (DOCKER_HOST=unix://…, default
 * /var/run/docker.sock), with node:http. Why not the docker CLI: the API returns structured JSON (no
 * parsing of `docker inspect` output across CLI versions — the CLI found first on PATH is often not the
 * daemon's own build), stop/start carry their own timeouts, and it needs no program beside the daemon.
 * Only what volume backups need: volumes, containers, labels, stop and start.
 */
export const LABEL_BACKUP = 'vertex-backup.backup';
export const LABEL_STOP = 'vertex-backup.stop';
export const LABEL_PROJECT = 'com.docker.compose.project';

export interface VolumeInfo {
  Name: string;
  Driver: string;
  Mountpoint: string;
  Labels: Record<string, string> | null;
}

export interface ContainerSummary {
  Id: string;
  Names: string[];
  State: string;
  Labels: Record<string, string>;
  Mounts: { Type: string; Name?: string; Destination: string }[];
}

export interface DockerOptions {
  /** DOCKER_HOST: unix:///path (the local daemon) or tcp://host:port (a remote daemon, plain HTTP: put TLS in front with a tunnel) */
  host?: string;
  /** per request, besides the stop timeout */
  timeoutMs?: number;
}

export class DockerEngine {
  /** where the daemon is, for messages: the socket path or host:port */
  readonly socketPath: string;
  /** a daemon on another machine: its volumes' mountpoints are not ours to read (see ops/volumes.ts) */
  readonly remote: boolean;
  private readonly target: http.RequestOptions;
  private readonly timeoutMs: number;

  constructor(opts: DockerOptions = {}) {
    const host = opts.host || 'unix:///var/run/docker.sock';
    const tcp = /^tcp:\/\/([^/:]+|\[[^\]]+\]):(\d+)\/?$/.exec(host);
    if (host.startsWith('unix://')) {
      this.socketPath = host.slice('unix://'.length);
      this.target = { socketPath: this.socketPath };
      this.remote = false;
    } else if (tcp) {
      if (process.env.DOCKER_TLS_VERIFY)
        throw usageError(
          `DOCKER_HOST=${host} with DOCKER_TLS_VERIFY: TLS to the Docker daemon is not supported`,
          'reach the daemon through an SSH tunnel (ssh -L 2375:/var/run/docker.sock host) and set DOCKER_HOST=tcp://127.0.0.1:2375',
        );
      this.socketPath = `${tcp[1]}:${tcp[2]}`;
      this.target = { host: tcp[1]!.replace(/^\[|\]$/g, ''), port: Number(tcp[2]) };
      this.remote = true;
    } else {
      throw usageError(`DOCKER_HOST=${host}: use unix:///path/to/docker.sock or tcp://host:port`, 'the default is unix:///var/run/docker.sock');
    }
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** The response itself, for a body that must stream (an archive); non-2xx answers are read and thrown. */
  private open(method: string, path: string, what: string, timeoutMs = this.timeoutMs): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = http.request({ ...this.target, method, path: `/v1.41${path}`, headers: { Host: 'docker' } }, (res) => {
        req.setTimeout(0);
        if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) return resolve(res);
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let msg = Buffer.concat(chunks).toString('utf8');
          try {
            msg = (JSON.parse(msg) as { message?: string }).message ?? msg;
          } catch {
            /* plain text */
          }
          reject(new BackupError('FAILED', `Docker: ${what}: ${msg.trim() || `HTTP ${res.statusCode}`}`));
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from the Docker daemon within ${Math.round(timeoutMs / 1000)} s`)));
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      req.end();
    });
  }

  private connectError(err: NodeJS.ErrnoException): BackupError {
    if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
      return usageError(
        `no Docker daemon at ${this.socketPath} (${err.code})`,
        'start dockerd, or point DOCKER_HOST at its socket (unix:///var/run/docker.sock)',
      );
    if (err.code === 'EACCES') return usageError(`no permission on the Docker socket ${this.socketPath}`, 'run as root or as a member of the docker group');
    return new BackupError('FAILED', `Docker daemon at ${this.socketPath}: ${err.message}`, { cause: err });
  }

  private request<T>(method: string, path: string, timeoutMs = this.timeoutMs, body?: unknown): Promise<{ status: number; body: T }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const headers: http.OutgoingHttpHeaders = { Host: 'docker' };
      if (payload) Object.assign(headers, { 'Content-Type': 'application/json', 'Content-Length': payload.length });
      const req = http.request({ ...this.target, method, path: `/v1.41${path}`, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            /* plain text */
          }
          resolve({ status: res.statusCode ?? 0, body: body as T });
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer from the Docker daemon within ${Math.round(timeoutMs / 1000)} s`)));
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.connectError(err)));
      req.end(payload);
    });
  }

  private async call<T>(method: string, path: string, ok: number[], what: string, timeoutMs?: number): Promise<T> {
    const r = await this.request<T>(method, path, timeoutMs);
    if (!ok.includes(r.status)) {
      const msg = (r.body as { message?: string } | undefined)?.message ?? String(r.body ?? '');
      throw new BackupError('FAILED', `Docker: ${what}: ${msg || `HTTP ${r.status}`}`);
    }
    return r.body;
  }

  async ping(): Promise<void> {
    await this.call('GET', '/_ping', [200], 'ping');
  }

  /** undefined when there is no such volume */
  async inspectVolume(name: string): Promise<VolumeInfo | undefined> {
    const r = await this.request<VolumeInfo>('GET', `/volumes/${encodeURIComponent(name)}`);
    if (r.status === 404) return undefined;
    if (r.status !== 200) throw new BackupError('FAILED', `Docker: inspect volume ${name}: HTTP ${r.status}`);
    return r.body;
  }

  async listVolumes(label?: string): Promise<VolumeInfo[]> {
    const filters = label ? `?filters=${encodeURIComponent(JSON.stringify({ label: [label] }))}` : '';
    const body = await this.call<{ Volumes: VolumeInfo[] | null }>('GET', `/volumes${filters}`, [200], 'list volumes');
    return body.Volumes ?? [];
  }

  /** Every container (running or not) that mounts the volume. */
  async containersUsing(volume: string): Promise<ContainerSummary[]> {
    const filters = encodeURIComponent(JSON.stringify({ volume: [volume] }));
    return this.call<ContainerSummary[]>('GET', `/containers/json?all=1&filters=${filters}`, [200], `containers using ${volume}`);
  }

  async isRunning(id: string): Promise<boolean> {
    const body = await this.call<{ State: { Running: boolean } }>('GET', `/containers/${id}/json`, [200], `inspect container ${id.slice(0, 12)}`);
    return body.State.Running;
  }

  /** Stops within `timeoutS` (SIGTERM, then the daemon's SIGKILL); 304 is "already stopped". */
  async stop(id: string, timeoutS: number): Promise<void> {
    await this.call('POST', `/containers/${id}/stop?t=${timeoutS}`, [204, 304], `stop container ${id.slice(0, 12)}`, (timeoutS + 15) * 1000);
  }

  /**
   * SIGTERM, then waits up to `timeoutS` for it to exit; never SIGKILL: a database killed mid-write is
   * worse than a live copy. Says whether it stopped.
   */
  async stopGracefully(id: string, timeoutS: number): Promise<boolean> {
    const r = await this.request<{ message?: string }>('POST', `/containers/${id}/kill?signal=SIGTERM`);
    if (r.status === 409) return !(await this.isRunning(id));
    if (r.status !== 204) throw new BackupError('FAILED', `Docker: stop container ${id.slice(0, 12)}: ${r.body?.message ?? `HTTP ${r.status}`}`);
    const until = Date.now() + timeoutS * 1000;
    while (Date.now() < until) {
      if (!(await this.isRunning(id))) return true;
      await new Promise((res) => setTimeout(res, 50));
    }
    return !(await this.isRunning(id));
  }

  async start(id: string): Promise<void> {
    await this.call('POST', `/containers/${id}/start`, [204, 304], `start container ${id.slice(0, 12)}`);
  }

  /**
   * A container that is never started, only created so that the daemon mounts `volume` read-only at
   * `mountAt` for an archive read (the helper-container fallback). No command runs in it and no network is
   * attached; the image must already be on the daemon (no pull: offline hosts and no surprise downloads).
   */
  async createReader(image: string, volume: string, mountAt: string): Promise<string> {
    const r = await this.request<{ Id?: string; message?: string }>('POST', '/containers/create', this.timeoutMs, {
      Image: image,
      Cmd: ['true'],
      Labels: { 'vertex-backup.helper': 'true' },
      NetworkDisabled: true,
      HostConfig: { Binds: [`${volume}:${mountAt}:ro`], NetworkMode: 'none' },
    });
    if (r.status === 404)
      throw usageError(
        `no image '${image}' on the Docker daemon (VOLUME_HELPER_IMAGE)`,
        'name an image the daemon already has (docker image ls); vertex-backup never pulls one',
      );
    if (r.status !== 201 || !r.body?.Id)
      throw new BackupError('FAILED', `Docker: create a reader container for ${volume}: ${r.body?.message ?? `HTTP ${r.status}`}`);
    return r.body.Id;
  }

  /** A tar stream of `path` inside a container (GET /containers/{id}/archive): entries named `<basename>/…`. */
  async archive(id: string, path: string): Promise<Readable> {
    return this.open('GET', `/containers/${id}/archive?path=${encodeURIComponent(path)}`, `read ${path} from container ${id.slice(0, 12)}`);
  }

  async remove(id: string): Promise<void> {
    await this.call('DELETE', `/containers/${id}?force=1`, [204, 404], `remove container ${id.slice(0, 12)}`);
  }
}

export const containerName = (c: ContainerSummary): string => (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
