/**
 * File names are bytes, and not every name is valid UTF-8 (`caf\xe9.jpg` from a Latin-1 upload).
 * Inside the program a name is a string in which each byte that is not part of valid UTF-8 is held as
 * the lone surrogate U+DC00+byte (Python's "surrogateescape"): valid UTF-8 never decodes to those, so
 * the mapping is exact both ways. `fsPath` turns such a string back into the bytes for fs calls,
 * `nameBytes` into the bytes for a tar header, `showName` into `caf\xe9.jpg` for messages.
 */

const ESC_LO = 0xdc80;
// the u flag: the low half of a surrogate pair (an emoji) is part of its code point, not an escape
const HAS_ESCAPE = /[\udc80-\udcff]/u;
const ESCAPES = /[\udc80-\udcff]/gu;

/** Length of the valid UTF-8 sequence starting at buf[i], or 0 when the byte there starts none. */
function utf8SequenceAt(buf: Uint8Array, i: number): number {
  const b = buf[i];
  if (b < 0x80) return 1;
  let n: number;
  let min: number;
  if (b >= 0xc2 && b <= 0xdf) [n, min] = [2, 0x80];
  else if (b >= 0xe0 && b <= 0xef) [n, min] = [3, 0x800];
  else if (b >= 0xf0 && b <= 0xf4) [n, min] = [4, 0x10000];
  else return 0;
  if (i + n > buf.length) return 0;
  let cp = b & (0xff >> (n + 1));
  for (let k = 1; k < n; k++) {
    const c = buf[i + k];
    if ((c & 0xc0) !== 0x80) return 0;
    cp = (cp << 6) | (c & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/** Bytes of a name (from readdir with encoding 'buffer', or a tar header) to the program's string. */
export function decodeName(buf: Uint8Array): string {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  // nearly every name is valid UTF-8: decoded without a replacement character, it is exactly that
  const text = b.toString('utf8');
  if (!text.includes('\ufffd')) return text;
  let out = '';
  let start = 0;
  let i = 0;
  while (i < b.length) {
    const n = utf8SequenceAt(b, i);
    if (n > 0) {
      i += n;
      continue;
    }
    out += b.toString('utf8', start, i) + String.fromCharCode(ESC_LO - 0x80 + b[i]);
    i++;
    start = i;
  }
  return out + b.toString('utf8', start);
}

export const isByteName = (name: string): boolean => HAS_ESCAPE.test(name);

/** The exact bytes a name stands for. */
export function nameBytes(name: string): Buffer {
  if (!isByteName(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let start = 0;
  for (const m of name.matchAll(ESCAPES)) {
    const i = m.index;
    parts.push(Buffer.from(name.slice(start, i), 'utf8'), Buffer.of(name.charCodeAt(i) - ESC_LO + 0x80));
    start = i + 1;
  }
  parts.push(Buffer.from(name.slice(start), 'utf8'));
  return Buffer.concat(parts);
}

/** What to hand to fs: the string itself when it is plain UTF-8, else its bytes. */
export function fsPath(name: string): string | Buffer {
  return isByteName(name) ? nameBytes(name) : name;
}

/** For messages: bytes that are not UTF-8 shown as `\xe9`. */
export function showName(name: string): string {
  return name.replace(ESCAPES, (c) => `\\x${(c.charCodeAt(0) - ESC_LO + 0x80).toString(16).padStart(2, '0')}`);
}

/**
 * A tar entry's name as bytes. Read with tar-stream's `filenameEncoding: 'latin1'`, a name from the
 * ustar header or a GNU long-name entry is one char per byte; a PAX `path` record is UTF-8 text.
 */
export function decodeTarName(name: string, fromPax: boolean): string {
  return fromPax ? name : decodeName(Buffer.from(name, 'latin1'));
}

/** Decodes an entry header's name and link target in place (see decodeTarName). */
export function decodeEntryNames(h: { name: string; linkname?: string | null; pax?: unknown }): void {
  const pax = (h.pax ?? {}) as { path?: string; linkpath?: string };
  h.name = decodeTarName(h.name, pax.path !== undefined);
  if (h.linkname) h.linkname = decodeTarName(h.linkname, pax.linkpath !== undefined);
}

/**
 * A GNU long-name ('L') or long-link ('K') entry carrying raw bytes for the entry that follows it:
 * the way GNU tar itself stores names that are not UTF-8. tar-stream writes only UTF-8 names.
 */
export function gnuLongNameEntry(bytes: Buffer, kind: 'name' | 'link'): Buffer {
  // the GNU magic: these entries are a GNU extension
  return extensionEntry('././@LongLink', kind === 'name' ? 'L' : 'K', 'ustar  \0', Buffer.concat([bytes, Buffer.alloc(1)]));
}

/**
 * A POSIX extended header ('x') with the given records for the entry that follows it: what a ustar
 * header cannot hold (see archive/pack.ts), for an entry whose names tar-stream must not write.
 */
export function paxEntry(records: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    // a record's length counts its own digits
    let len = body.length + 1;
    while (`${len}${body}`.length !== len) len++;
    text += `${len}${body}`;
  }
  return extensionEntry('././@PaxHeader', 'x', 'ustar\x0000', Buffer.from(text, 'utf8'));
}

function extensionEntry(name: string, typeflag: string, magic: string, data: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'ascii');
  header.write('0000644\0', 100, 'ascii');
  header.write('0000000\0', 108, 'ascii');
  header.write('0000000\0', 116, 'ascii');
  header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  header.write('00000000000\0', 136, 'ascii');
  header.write(typeflag, 156, 'ascii');
  header.write(magic, 257, 'ascii');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([header, data, Buffer.alloc(pad)]);
}
