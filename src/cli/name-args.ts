import { readFileSync } from 'node:fs';
import { decodeName } from '../archive/bytenames.js';

let cmdline: Buffer[] | undefined;
/** The arguments as bytes: Node decodes argv as UTF-8 and turns bytes that are not into U+FFFD. */
function rawArgs(): Buffer[] {
  if (cmdline === undefined) {
    try {
      const b = readFileSync('/proc/self/cmdline');
      cmdline = [];
      for (let start = 0, i = b.indexOf(0); i >= 0; start = i + 1, i = b.indexOf(0, start)) cmdline.push(b.subarray(start, i));
    } catch {
      cmdline = []; // not Linux: the escaped form below still works
    }
  }
  return cmdline;
}

/**
 * A name inside a backup (ls PATH, dump FILE, restore --include PATH) as the program holds names (see
 * archive/bytenames.ts). A name that is not UTF-8 arrives two ways: as its raw bytes (completed by the
 * shell's Tab), which Node's argv has already replaced with U+FFFD, so the bytes are read back from
 * /proc/self/cmdline; or typed the way `ls` shows it, `caf\xe9.jpg`.
 */
export function nameArg(value: string): string {
  let v = value;
  if (v.includes('\ufffd')) {
    const raw = rawArgs().find((b) => b.toString('utf8') === value);
    if (raw) v = decodeName(raw);
  }
  return v.replace(/\\x([89a-f][0-9a-f])/gi, (_, hex: string) => String.fromCharCode(0xdc00 + Number.parseInt(hex, 16)));
}
