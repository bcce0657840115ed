import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { usageError } from '../errors.js';
import { remoteTimeoutMs } from './http-agent.js';
import {
  SchemeRemote,
  type RemoteEntry,
  RemoteError,
  type RemoteSpec,
  type SpaceInfo,
  type ObjectOptions,
  errorMessage,
  isTransientNetworkError,
  joinRemote,
  missingAs,
  registerScheme,
} from './remote.js';

/**
 * s3://bucket/prefix on any S3-compatible service. Options (config or URL query): endpoint, region,
 * force_path_style, access_key_id/secret_access_key/session_token (otherwise the SDK's standard chain:
 * AWS_* environment variables, ~/.aws/credentials, instance roles), part_size_mb, queue_size, max_attempts.
 * Uploads go through lib-storage: one PUT for small files, multipart for large ones; either way the
 * object only appears when complete.
 */
const AUTH_ERRORS = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'ExpiredToken',
  'InvalidToken',
  'CredentialsProviderError',
  'AuthorizationHeaderMalformed',
]);

type SdkModule = typeof import('@aws-sdk/client-s3');

class S3Remote extends SchemeRemote {
  // close() ends every call in flight: the SDK retries a request whose connection was cut, so
  // destroying the client alone left a retry hanging on a server that never answers after SIGTERM
  private readonly closing = new AbortController();
  constructor(
    url: string,
    private readonly sdk: SdkModule,
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly prefix: string,
    private readonly partSize: number,
    private readonly queueSize: number,
  ) {
    super('s3', url);
  }

  private signal(call?: AbortSignal): AbortSignal {
    return call ? AbortSignal.any([call, this.closing.signal]) : this.closing.signal;
  }

  private key(rel: string): string {
    return joinRemote(this.prefix, rel);
  }

  async put(relPath: string, localFile: string, options: ObjectOptions = {}): Promise<void> {
    const { Upload } = await import('@aws-sdk/lib-storage');
    const { size } = await fsp.stat(localFile);
    const upload = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: this.key(relPath),
        Body: createReadStream(localFile, { highWaterMark: 1 << 20 }),
        ContentLength: size,
        ContentType: 'application/octet-stream',
        Metadata: options.checksum ? { sha256: options.checksum } : undefined,
      },
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false, // abort the multipart upload: no orphaned parts billed forever
    });
    if (options.onProgress) upload.on('httpUploadProgress', (p) => options.onProgress?.(p.loaded ?? 0));
    const onAbort = () => void upload.abort().catch(() => {});
    const stop = this.signal(options.signal);
    stop.addEventListener('abort', onAbort, { once: true });
    try {
      await upload.done();
    } catch (err) {
      throw this.wrap(err, relPath);
    } finally {
      stop.removeEventListener('abort', onAbort);
    }
  }

  async read(relPath: string, options: { signal?: AbortSignal } = {}): Promise<Readable> {
    try {
      const res = await this.client.send(new this.sdk.GetObjectCommand({ Bucket: this.bucket, Key: this.key(relPath) }), {
        abortSignal: this.signal(options.signal),
      });
      return res.Body as Readable;
    } catch (err) {
      throw this.wrap(err, relPath);
    }
  }

  async list(prefix = ''): Promise<RemoteEntry[]> {
    const base = this.prefix === '' ? '' : `${this.prefix.replace(/\/+$/, '')}/`;
    const sub = joinRemote('', prefix);
    const out: RemoteEntry[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(new this.sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: base + sub, ContinuationToken: token }), {
          abortSignal: this.signal(),
        });
        for (const o of res.Contents ?? []) {
          if (!o.Key || o.Key.endsWith('/')) continue;
          out.push({ path: o.Key.slice(base.length), size: o.Size ?? 0 });
        }
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw this.wrap(err, prefix || '/');
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  async stat(relPath: string): Promise<RemoteEntry | null> {
    return missingAs(
      async () => {
        const res = await this.client.send(new this.sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.key(relPath) }), { abortSignal: this.signal() });
        return { path: relPath, size: res.ContentLength ?? 0, checksum: res.Metadata?.sha256 };
      },
      (err) => this.wrap(err, relPath),
      null,
    );
  }

  async delete(relPath: string): Promise<void> {
    await missingAs(
      () => this.client.send(new this.sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(relPath) }), { abortSignal: this.signal() }),
      (err) => this.wrap(err, relPath),
      undefined,
    );
  }

  async space(): Promise<SpaceInfo> {
    return {}; // S3 has no quota call; `remote info` sums the listing instead
  }

  override async close(): Promise<void> {
    this.closing.abort();
    this.client.destroy();
  }

  private wrap(err: unknown, rel: string): unknown {
    if (err instanceof RemoteError) return err;
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown };
    const status = e.$metadata?.httpStatusCode;
    const what = `${rel} on ${this.url}`;
    if (e.name === 'AbortError') return err;
    if (e.name === 'CredentialsProviderError') {
      return new RemoteError('auth', `no S3 credentials found for ${this.url}`, {
        cause: err,
        hint: 'set access_key_id/secret_access_key in the remotes config, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY',
      });
    }
    if ((e.name && AUTH_ERRORS.has(e.name)) || status === 401 || status === 403) {
      return new RemoteError('auth', `S3 refused the credentials for ${what}: ${e.name ?? status}`, {
        cause: err,
        hint: 'check access_key_id/secret_access_key in the remotes config or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY',
      });
    }
    if (e.name === 'NoSuchBucket') {
      return new RemoteError('fatal', `bucket "${this.bucket}" does not exist at ${this.url}`, {
        cause: err,
        hint: 'create the bucket first; vertex-backup never creates buckets',
      });
    }
    if (e.name === 'NotFound' || e.name === 'NoSuchKey' || status === 404) {
      return new RemoteError('missing', `${what}: not found`, { cause: err });
    }
    if ((status !== undefined && status >= 500) || e.$retryable || isTransientNetworkError(err)) {
      return new RemoteError('transient', `S3 error for ${what}: ${errorMessage(err)}`, { cause: err });
    }
    return new RemoteError('fatal', `S3 error for ${what}: ${e.name ?? ''} ${errorMessage(err)}`.trim(), { cause: err });
  }
}

function opt(spec: RemoteSpec, query: URLSearchParams, ...keys: string[]): string | undefined {
  for (const k of keys) {
    const v = spec.options[k] ?? query.get(k);
    if (v !== undefined && v !== null && v !== '') return String(v);
  }
  return undefined;
}

registerScheme('s3', async (spec) => {
  const u = new URL(spec.url);
  const bucket = u.hostname;
  if (!bucket) throw usageError(`s3 URL needs a bucket: ${spec.url}`, 'use s3://bucket/prefix');
  const prefix = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
  const q = u.searchParams;
  const endpoint = opt(spec, q, 'endpoint') ?? spec.env.AWS_ENDPOINT_URL_S3 ?? spec.env.AWS_ENDPOINT_URL;
  const region = opt(spec, q, 'region') ?? spec.env.AWS_REGION ?? spec.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const pathStyle = /^(1|true|yes)$/i.test(opt(spec, q, 'force_path_style', 'path_style') ?? '');
  // the config wins; then the standard variables (from the environment given, which includes .env);
  // with neither, the SDK's own chain (profiles, SSO, instance roles) decides
  const fromConfig = opt(spec, q, 'access_key_id') !== undefined;
  const accessKeyId = fromConfig ? opt(spec, q, 'access_key_id') : spec.env.AWS_ACCESS_KEY_ID || undefined;
  const secretAccessKey = fromConfig ? opt(spec, q, 'secret_access_key') : spec.env.AWS_SECRET_ACCESS_KEY || undefined;
  const sessionToken = fromConfig ? opt(spec, q, 'session_token') : spec.env.AWS_SESSION_TOKEN || undefined;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw usageError(`remote "${spec.name ?? spec.url}": give both access_key_id and secret_access_key, or neither`);
  }
  const partSize = Math.max(5, Number(opt(spec, q, 'part_size_mb') ?? 16)) * 1024 * 1024;
  const queueSize = Math.max(1, Number(opt(spec, q, 'queue_size') ?? 4));
  const timeoutMs = remoteTimeoutMs(opt(spec, q, 'timeout_seconds'));
  if (timeoutMs === undefined) throw usageError(`remote "${spec.name ?? spec.url}": timeout_seconds must be a positive number of seconds`);
  // The SDK prints a banner on every run under Node < 22 about releases after January 2027 needing Node
  // 22. The version pinned in package.json supports Node 20 (the engines floor): the banner would be
  // noise in every cron mail, and moving the floor is a release decision (docs/development.md).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const sdk = await import('@aws-sdk/client-s3');
  const client = new sdk.S3Client({
    endpoint,
    region,
    forcePathStyle: pathStyle,
    maxAttempts: Number(opt(spec, q, 'max_attempts') ?? 3),
    credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey, sessionToken } : undefined,
    // the SDK waits forever by default: a server that accepts and never answers (or stops mid-body)
    // hung sync; socketTimeout is silence on the socket, so a long transfer that moves is never cut
    requestHandler: { connectionTimeout: timeoutMs, socketTimeout: timeoutMs },
    // Only send/verify checksums when the operation requires them: S3-compatible servers (s3rver, older
    // MinIO, Ceph) reject the newer default CRC32 trailers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const shown = `s3://${bucket}/${prefix}${endpoint ? ` (${endpoint})` : ''}`;
  return new S3Remote(shown, sdk, client, bucket, prefix, partSize, queueSize);
});
