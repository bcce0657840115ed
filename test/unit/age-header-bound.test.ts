/**
 * Issue 30 item 12: the age header is bounded as a whole (64 KiB), stanzas after `---` included: a
 * header of 9,000 stanzas that arrives in one read is refused, not parsed and tried stanza by stanza.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MAX_HEADER_BYTES, parseHeader } from '../../src/crypto/age-header.js';

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

function header(stanzas: number): Buffer {
  let h = 'age-encryption.org/v1\n';
  for (let i = 0; i < stanzas; i++) h += `-> X25519 ${b64(randomBytes(32))}\n${b64(randomBytes(32))}\n`;
  h += `--- ${b64(randomBytes(32))}\n`;
  return Buffer.concat([Buffer.from(h, 'latin1'), randomBytes(64)]);
}

describe('age header bound', () => {
  it('a header of a few stanzas parses', () => {
    expect(parseHeader(header(3))?.stanzas.length).toBe(3);
  });

  it('a header over 64 KiB that arrives whole is refused, whatever comes after ---', () => {
    const big = header(9000);
    expect(big.indexOf('\n--- ')).toBeGreaterThan(MAX_HEADER_BYTES);
    expect(() => parseHeader(big)).toThrow(/header too long/);
  });
});
