/**
 * Issue 13, item 9: Ctrl-C in a terminal stops a run. Driven through a real pseudo-terminal (python3's pty
 * module), so the line discipline turns \x03 into SIGINT exactly as it does for an operator: exit 130,
 * no partial files, the terminal left with its normal settings (isig, icanon, echo).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, baseEnv } from '../helpers/cli.js';
import { type AppFixture, filesUnder, makeApp, rmrf } from '../helpers/fixtures.js';
import { needs } from '../helpers/optional.js';

/** Starts ARGS under a pty, waits for WAIT_FOR in the output, types the keys, reads to the end. */
const DRIVER = `
import os, pty, sys, time, termios, json, select, fcntl, struct
wait_for = sys.argv[1].encode()
keys = sys.argv[2].encode()
pid, fd = pty.fork()
if pid == 0:
    if not os.environ.get('PTY_UNSIZED'):
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))
    os.execvp(sys.argv[3], sys.argv[3:])
out = b''
sent = False
deadline = time.time() + 60
timed_out = False
while True:
    if time.time() > deadline:
        timed_out = True
        os.kill(pid, 9)
        break
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            d = os.read(fd, 65536)
        except OSError:
            break
        if not d:
            break
        out += d
    if not sent and wait_for in out:
        time.sleep(0.3)
        for k in keys:
            os.write(fd, bytes([k]))
            time.sleep(0.3)
        sent = True
        deadline = time.time() + 20
# the slave's settings as the child left them (the master fd reports them on Linux)
attrs = termios.tcgetattr(fd)
lflag = attrs[3]
_, st = os.waitpid(pid, 0)
json.dump({'code': os.waitstatus_to_exitcode(st), 'timedOut': timed_out, 'sent': sent, 'isig': bool(lflag & termios.ISIG),
           'icanon': bool(lflag & termios.ICANON), 'echo': bool(lflag & termios.ECHO),
           'output': out.decode('utf8', 'replace')}, sys.stdout)
`;

interface PtyRun {
  code: number;
  sent: boolean;
  timedOut: boolean;
  isig: boolean;
  icanon: boolean;
  echo: boolean;
  output: string;
}

function runPty(args: string[], cwd: string, waitFor: string, keys: string, env: Record<string, string> = {}): PtyRun {
  const r = spawnSync('python3', ['-c', DRIVER, waitFor, keys, process.execPath, BIN, ...args], {
    cwd,
    env: { ...baseEnv(cwd), ...env },
    encoding: 'utf8',
    timeout: 90_000,
    maxBuffer: 16 << 20,
  });
  if (r.status !== 0) throw new Error(`pty driver failed (${r.status} ${r.error?.message}): ${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout) as PtyRun;
}

let app: AppFixture;
beforeAll(() => {
  // xz on incompressible data is slow enough that the run is still going when the keys arrive
  app = makeApp({ randomBytes: 32 * 1024 * 1024, events: 200 });
});
afterAll(() => rmrf(app?.cwd));

describe('Ctrl-C in a terminal', () => {
  needs('xz', 'xz-utils').it('stops a create showing progress: exit 130, partial files removed, tty settings intact', () => {
    const r = runPty(['create', '--type', 'storage', '--compression', 'xz', ...app.flags], app.cwd, 'storage', '\x03');
    expect(r.sent, r.output).toBe(true);
    expect(r.timedOut, `still running 20 s after Ctrl-C:\n${r.output.slice(-2000)}`).toBe(false);
    expect(r.code, r.output).toBe(130);
    expect(r.output).toMatch(/SIGINT/);
    expect(r.output).toMatch(/error:.*interrupted by SIGINT/);
    // item 1: the spinner shows done/total, percent and files, not only a byte count
    expect(r.output).toMatch(/storage \d{8}_\d{6}: [\d.]+ \S+ \/ [\d.]+ MiB \(\d+%\), \d+\/\d+ files/);
    expect(r.isig).toBe(true);
    expect(r.icanon).toBe(true);
    expect(r.echo).toBe(true);
    const left = filesUnder(app.backupDir).filter((f) => !fs.statSync(path.join(app.backupDir, f)).isDirectory() && !/backup\.log|status\.json|^\.|\/\./.test(f));
    expect(left).toEqual([]);
  });
});

describe('SIGINT to the whole process group (what a terminal sends on Ctrl-C)', () => {
  needs('xz', 'xz-utils').it('with xz running as a child: exit 130 and "interrupted by SIGINT", not a raw EPIPE from the dead xz', async () => {
    for (let trial = 0; trial < 3; trial++) {
      // its own process group, as a shell's foreground job is; the group gets the signal, xz included
      const child = spawn(process.execPath, [BIN, 'create', '--type', 'storage', '--compression', 'xz', ...app.flags], { cwd: app.cwd, env: baseEnv(app.cwd), detached: true });
      let stderr = '';
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      child.stdout.resume();
      // wait until xz is busy
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && !spawnSync('pgrep', ['-P', String(child.pid), 'xz']).stdout?.length) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 300));
      process.kill(-child.pid!, 'SIGINT');
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? -1 : null))));
      expect(code, stderr).toBe(130);
      expect(stderr).toMatch(/error:.*interrupted by SIGINT/);
      expect(stderr).not.toMatch(/EPIPE/);
      // quiet after Ctrl-C (issue 29 item 9): no Node warning about handles left to the garbage collector
      expect(stderr).not.toMatch(/DEP0137|Closing file descriptor|MaxListenersExceeded|Warning:/);
    }
  });
});

describe('a terminal that reports no size (a serial console, an unsized pty)', () => {
  it('verify ends normally instead of redrawing its spinner forever', () => {
    const c = spawnSync(process.execPath, [BIN, 'create', '--type', 'storage', ...app.flags], { cwd: app.cwd, env: baseEnv(app.cwd), encoding: 'utf8' });
    expect(c.status, c.stderr).toBe(0);
    // nothing to wait for and no keys: the driver gives the run 20 s, then kills it
    const r = runPty(['verify', '--all', ...app.flags], app.cwd, '', '', { PTY_UNSIZED: '1' });
    expect(r.timedOut, `still running after 20 s, ${r.output.length} bytes of output:\n${r.output.slice(-300)}`).toBe(false);
    expect(r.code, r.output.slice(-2000)).toBe(0);
    expect(r.output.length).toBeLessThan(100_000);
  });
});

describe('the restore prompt on a terminal', () => {
  it('with --target NEWDIR speaks of new files, not of a current copy kept aside; "n" changes nothing', async () => {
    const small = makeApp({ randomBytes: 32 * 1024, events: 50 });
    try {
      const c = spawnSync(process.execPath, [BIN, 'create', ...small.flags], { cwd: small.cwd, env: baseEnv(small.cwd), encoding: 'utf8' });
      expect(c.status, c.stderr).toBe(0);
      const target = path.join(small.cwd, 'new-target');
      const r = runPty(['restore', 'latest', '--target', target, ...small.flags], small.cwd, 'Proceed?', 'n\r');
      expect(r.code, r.output).toBe(1);
      expect(r.output).toMatch(/database .* -> .*new-target.*\(a new file: nothing there now\)/);
      expect(r.output).toMatch(/storage .* -> .*new-target.*\(a new directory: nothing there now\)/);
      expect(r.output).not.toMatch(/copied aside|kept as/);
      expect(r.output).toMatch(/restore cancelled: nothing was changed/);
      expect(fs.existsSync(target)).toBe(false);
    } finally {
      rmrf(small.cwd);
    }
  });
});
