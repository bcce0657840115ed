/**
 * Issue 24: the example of docs/docker-volumes.md (two volumes, one stop-labelled container, a before
 * hook) run literally with bash against a real dockerd, `vertex-backup` and `docker` on PATH.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { BIN, REPO } from '../helpers/cli.js';
import { type Dockerd, dockerNeed, startDockerd } from '../helpers/docker.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const need = dockerNeed();

function example(): string {
  const text = fs.readFileSync(path.join(REPO, 'docs', 'docker-volumes.md'), 'utf8');
  const m = /## Example[^\n]*\n[\s\S]*?```sh\n([\s\S]*?)```/.exec(text);
  if (!m) throw new Error('no sh block under "## Example" in docs/docker-volumes.md');
  return m[1];
}

need.describe('docs/docker-volumes.md example (real dockerd)', () => {
  let d: Dockerd;
  let cwd: string;
  beforeAll(async () => {
    d = await startDockerd();
    cwd = tempDir('vb-dvx-');
  }, 120_000);
  afterAll(async () => {
    await d?.stop();
    rmrf(cwd);
  }, 60_000);

  need.it('runs as written: both volumes backed up, the container down only for the catch-up, restored and running', () => {
    const bin = path.join(cwd, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, 'vertex-backup'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`, { mode: 0o755 });
    if (fs.existsSync('/usr/bin/docker')) fs.symlinkSync('/usr/bin/docker', path.join(bin, 'docker'));
    const script = path.join(cwd, 'example.sh');
    fs.writeFileSync(script, `set -e\n${example()}`);
    const r = spawnSync('bash', [script], {
      cwd,
      encoding: 'utf8',
      timeout: 120_000,
      env: { PATH: `${bin}:${process.env.PATH}`, HOME: cwd, LANG: 'C.UTF-8', TZ: 'UTC', DOCKER_HOST: d.host, DOCKER_STOP_TIMEOUT: '5s' },
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toContain('| starting the nightly volume backup');
    expect(r.stdout).toMatch(/volume {3}pgdata: backup \S+ \(.*live pass .* \+ catch-up\)/);
    expect(r.stdout).toMatch(/container app-db down \d/);
    expect(r.stdout).toMatch(/volume {3}functions: backup/);
    expect(d.docker(['inspect', '-f', '{{.State.Running}}', 'app-db'])).toBe('true');
    expect(fs.readdirSync(path.join(cwd, 'backups', 'volumes'))).toEqual(['functions', 'pgdata']);
  }, 180_000);
});
