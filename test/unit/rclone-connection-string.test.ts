import { describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/remote/rclone.js';
import { maskUrl, redact, registerSecretsIn } from '../../src/secrets.js';

describe('rclone connection strings (issue 30 item 6)', () => {
  it('are parsed as rclone reads them: quotes, doubled quotes, bare flags', () => {
    expect(parseConnectionString(`:s3,provider=Minio,endpoint="http://h:9000",secret_access_key='a''b:c',v2_auth:bucket/dir`)).toEqual({
      onTheFly: true,
      remote: 's3',
      params: [
        ['provider', 'Minio'],
        ['endpoint', 'http://h:9000'],
        ['secret_access_key', "a'b:c"],
        ['v2_auth', 'true'],
      ],
      rest: 'bucket/dir',
    });
    expect(parseConnectionString('gdrive,root_folder_id=xyz:backups')).toMatchObject({ onTheFly: false, remote: 'gdrive', rest: 'backups' });
    expect(parseConnectionString('gdrive:backups')).toBeUndefined();
  });

  it('secret parameters are masked in any text, registered when met in a config', () => {
    const url = `rclone::s3,access_key_id=AKIA1234,secret_access_key="s3cr:et,x",region=eu:bucket`;
    expect(maskUrl(url)).toBe('rclone::s3,access_key_id=***,secret_access_key=***,region=eu:bucket');
    expect(maskUrl('rclone::sftp,host=h,user=u,pass=0bscur3d:dir and sftp://u:pw@h/x')).toBe('rclone::sftp,host=h,user=u,pass=***:dir and sftp://u:***@h/x');
    expect(maskUrl('a,b,c=d,key=,e')).toBe('a,b,c=d,key=,e');
    registerSecretsIn({ remotes: { r: { url } } });
    expect(redact('rclone said: bad key s3cr:et,x here')).toBe('rclone said: bad key *** here');
  });
});
