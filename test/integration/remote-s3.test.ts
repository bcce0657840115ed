import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testRemote } from '../../src/ops/sync.js';
import { RemoteError } from '../../src/remote/remote.js';
import { openRemoteDefinition } from '../../src/remote/registry.js';
import { describeRemoteContract } from '../helpers/remote-fixtures.js';
import { type S3Server, startS3, tempDir } from '../helpers/servers.js';

let s3: S3Server;
let n = 0;

beforeAll(async () => {
  s3 = await startS3();
});
afterAll(async () => {
  await s3?.stop();
});

const MiB = 1024 * 1024;

function target(options: Record<string, unknown> = {}) {
  const prefix = `run${++n}`;
  // credentials from the standard AWS variables, endpoint and path style from the config
  const env = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
  return {
    open: () =>
      openRemoteDefinition(
        {
          name: 's3',
          url: `s3://${s3.bucket}/${prefix}`,
          enabled: true,
          options: { endpoint: s3.endpoint, region: 'us-east-1', force_path_style: true, part_size_mb: 5, max_attempts: 1, ...options },
        },
        env,
      ),
    interrupt: () => s3.stop(),
    resume: () => s3.restart(),
  };
}

describe('s3:// remote (s3rver)', () => {
  describeRemoteContract({
    label: 's3 (s3rver)',
    target: () => target(),
    // 12 MiB with 5 MiB parts: three-part multipart upload; the rest single PUTs
    roundTripParts: [12 * MiB, 300 * 1024],
    // the server stops in the middle of a multipart upload
    interruptedParts: [512 * 1024, 16 * MiB, 512 * 1024],
  });

  it('stores the sha256 as object metadata, so resume can compare checksums', async () => {
    const remote = await target().open();
    const file = path.join(tempDir('s3-meta'), 'f');
    fs.writeFileSync(file, 'hello');
    await remote.put('x/f', file, { checksum: 'abc123' });
    expect(await remote.stat('x/f')).toEqual({ path: 'x/f', size: 5, checksum: 'abc123' });
    expect(await remote.stat('x/missing')).toBeNull();
    const r = await testRemote(async () => remote, 's3');
    expect(r.ok).toBe(true);
  });

  // s3rver checks the access key id but does not compute SigV4 signatures, so the wrong part is the key id
  it('wrong credentials give a clear authentication error', async () => {
    const remote = await target({ access_key_id: 'WRONGKEY', secret_access_key: 'wrong-secret' }).open();
    const err = await remote.list('').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).kind).toBe('auth');
    expect((err as RemoteError).message).toMatch(/S3 refused the credentials.*InvalidAccessKeyId/);
    expect((err as RemoteError).message).not.toContain('wrong-secret');
    const t = await testRemote(() => target({ access_key_id: 'WRONGKEY', secret_access_key: 'wrong-secret' }).open(), 's3');
    expect(t.ok).toBe(false);
    // refused at the first request: "connect" is ok only once the server answered (issue 29)
    expect(t.steps).toMatchObject([{ step: 'connect', ok: false }]);
    await remote.close();
  });

  it('a missing bucket is named', async () => {
    const remote = await openRemoteDefinition(
      { name: 'x', url: 's3://no-such-bucket/p', enabled: true, options: { endpoint: s3.endpoint, force_path_style: true, access_key_id: 'S3RVER', secret_access_key: 'S3RVER' } },
      process.env,
    );
    await expect(remote.list('')).rejects.toThrow(/bucket "no-such-bucket" does not exist/);
    await remote.close();
  });
});
