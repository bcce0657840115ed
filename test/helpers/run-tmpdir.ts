/**
 * Every test run gets a temporary root of its own (`$TMPDIR/vb-run-<pid>-…`), set as TMPDIR before the
 * workers start, so every `os.tmpdir()` in a test, every spawned binary and every server a test starts
 * writes below it; it is removed when the run ends, whatever a test forgot. Mode 1777 like /tmp:
 * tests run the binary as other users (nobody, www-data, postgres) who must reach their own files.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export default function setup(): () => void {
  const parent = os.tmpdir();
  const root = fs.mkdtempSync(path.join(parent, `vb-run-${process.pid}-`));
  fs.chmodSync(root, 0o1777);
  const before = process.env.TMPDIR;
  process.env.TMPDIR = root;
  return () => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    if (process.env.VB_KEEP_TMP) return;
    fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  };
}
