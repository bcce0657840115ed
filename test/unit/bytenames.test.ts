/** Issue 12, items 1 and 8: names as bytes, and URL passwords masked whole. */
import { describe, expect, it } from 'vitest';
import { redact } from '../../src/secrets.js';
import { decodeName, fsPath, nameBytes, showName } from '../../src/archive/bytenames.js';

describe('byte names', () => {
  it.each([
    ['caf\xe9.jpg', 'caf\\xe9.jpg'],
    ['dir-\xff\xfe', 'dir-\\xff\\xfe'],
    ['\xc3', '\\xc3'], // a cut UTF-8 sequence
    ['\xed\xa0\x80', '\\xed\\xa0\\x80'], // an encoded surrogate is not UTF-8
    ['\xc0\xaf', '\\xc0\\xaf'], // an overlong '/'
    ['\xf0\x9f\x93\xb7-\xe9', '📷-\\xe9'], // an emoji (a surrogate pair) beside an escape
  ])('%j round-trips exactly and shows as %s', (latin1, shown) => {
    const bytes = Buffer.from(latin1, 'latin1');
    const name = decodeName(bytes);
    expect(nameBytes(name).equals(bytes)).toBe(true);
    expect(Buffer.isBuffer(fsPath(name))).toBe(true);
    expect(showName(name)).toBe(shown);
  });

  it('valid UTF-8 stays an ordinary string', () => {
    const name = decodeName(Buffer.from('café 📷.jpg', 'utf8'));
    expect(name).toBe('café 📷.jpg');
    expect(fsPath(name)).toBe('café 📷.jpg');
    expect(showName(name)).toBe('café 📷.jpg');
  });
});

describe('redact: URL passwords', () => {
  it('masks the whole password up to the last @ before the host', () => {
    expect(redact('postgresql://u:p@ss@h/db')).toBe('postgresql://u:***@h/db');
    expect(redact('see https://user:pa:ss@host:8080/x and more')).toBe('see https://user:***@host:8080/x and more');
  });
  it('never runs past a quote (a JSON line stays JSON)', () => {
    const line = JSON.stringify({ url: 'https://u:pw@h/x', mail: 'a@b' });
    expect(JSON.parse(redact(line))).toEqual({ url: 'https://u:***@h/x', mail: 'a@b' });
  });
});
