import * as http from 'node:http';
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
  /** DOCKER_HOST; only unix:// sockets are spoken to directly */
  host?: string;
  /** per request, besides the stop timeout */
  timeoutMs?: number;
}

export class DockerEngine {
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(opts: DockerOptions = {}) {
    const host = opts.host || 'unix:///var/run/docker.sock';
    if (!host.startsWith('unix://'))
      throw usageError(
        `DOCKER_HOST=${host}: only a local unix socket is supported for volume backups`,
        'run vertex-backup on the Docker host (volumes are read from their mountpoints) with DOCKER_HOST=unix:///var/run/docker.sock',
      );
    this.socketPath = host.slice('unix://'.length);
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  private request<T>(method: string, path: string, timeoutMs = this.timeoutMs): Promise<{ status: number; body: T }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path: `/v1.41${path}`, headers: { Host: 'docker' } }, (res) => {
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
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')
          reject(
            usageError(
              `no Docker daemon at ${this.socketPath} (${err.code})`,
              'start dockerd, or point DOCKER_HOST at its socket (unix:///var/run/docker.sock)',
            ),
          );
        else if (err.code === 'EACCES')
          reject(usageError(`no permission on the Docker socket ${this.socketPath}`, 'run as root or as a member of the docker group'));
        else reject(new BackupError('FAILED', `Docker daemon at ${this.socketPath}: ${err.message}`, { cause: err }));
      });
      req.end();
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
}

export const containerName = (c: ContainerSummary): string => (c.Names[0] ?? c.Id.slice(0, 12)).replace(/^\//, '');
