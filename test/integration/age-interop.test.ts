/**
 * Our age files against the stock `age` CLI (Debian package `age`), both directions: X25519,
 * passphrase (scrypt), several recipients, and the chunk-boundary sizes of the STREAM payload.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { parseIdentityText, parseRecipient, passphraseIdentity, passphraseRecipient } from '../../src/crypto/age-keys.js';
import { needs } from '../helpers/optional.js';
import { CHUNK, createDecryptStream, createEncryptStream } from '../../src/crypto/age-stream.js';

const needsAge = needs('age', 'age');
// the suite's set-up runs age-keygen while tests are collected: not when the suite is skipped or stands
// for a missing program under CI
const skipWithoutAge = !needsAge.available;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vb-age-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function age(args: string[], input?: Buffer) {
  const r = spawnSync('age', args, { input, maxBuffer: 64 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr?.toString() ?? '' };
}

/** age reads passphrases only from a terminal: drive it under a pty (python3), answering each prompt. */
function ageWithPassphrase(args: string[], passphrase: string) {
  const py = `
import os, pty, sys
pw = os.environ['VB_TEST_PASSPHRASE'].encode() + b'\\n'
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen = b''
answered = 0
while True:
    try:
        d = os.read(fd, 4096)
    except OSError:
        break
    if not d:
        break
    seen += d
    while seen.count(b'passphrase') > answered:
        os.write(fd, pw)
        answered += 1
_, st = os.waitpid(pid, 0)
sys.stderr.buffer.write(seen)
sys.exit(os.waitstatus_to_exitcode(st))
`;
  const r = spawnSync('python3', ['-c', py, 'age', ...args], { env: { ...process.env, VB_TEST_PASSPHRASE: passphrase }, timeout: 60_000 });
  return { code: r.status, stderr: r.stderr?.toString() ?? '' };
}

async function ourEncrypt(data: Buffer, recipients: Parameters<typeof createEncryptStream>[0]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), await createEncryptStream(recipients), new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

async function ourDecrypt(data: Buffer, identities: Parameters<typeof createDecryptStream>[0]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(Readable.from([data]), createDecryptStream(identities), new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
  return Buffer.concat(out);
}

function keygen(name: string): { file: string; recipient: string } {
  const file = path.join(dir, name);
  const r = spawnSync('age-keygen', ['-o', file]);
  if (r.status !== 0) throw new Error(`age-keygen failed: ${r.stderr}`);
  const recipient = /public key: (age1\w+)/.exec(fs.readFileSync(file, 'utf8'))![1];
  return { file, recipient };
}

const SIZES: [string, number][] = [
  ['an empty file', 0],
  ['1 byte', 1],
  ['exactly one 64 KiB chunk', CHUNK],
  ['64 KiB + 1', CHUNK + 1],
  ['an exact multiple of 64 KiB (3 chunks)', 3 * CHUNK],
  ['about 1 MB', 1_000_003],
  // more than one run of 16 chunks: sealed and opened in the stream's worker thread (issue 27)
  ['exactly two runs of 16 chunks (2 MiB)', 32 * CHUNK],
  ['three runs and 17 bytes', 48 * CHUNK + 17],
];

needsAge.describe('age CLI interop', () => {
  const alice = skipWithoutAge ? undefined! : keygen('alice.txt');
  const bob = skipWithoutAge ? undefined! : keygen('bob.txt');
  const aliceId = () => parseIdentityText(fs.readFileSync(alice.file, 'utf8'), alice.file);

  for (const [label, size] of SIZES) {
    it(`ours -> age -d (X25519): ${label}`, async () => {
      const data = randomBytes(size);
      const file = path.join(dir, `ours-${size}.age`);
      fs.writeFileSync(file, await ourEncrypt(data, [parseRecipient(alice.recipient, 'test')]));
      const r = age(['-d', '-i', alice.file, file]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.equals(data)).toBe(true);
    });

    it(`age -e -> ours (X25519): ${label}`, async () => {
      const data = randomBytes(size);
      const r = age(['-e', '-r', alice.recipient], data);
      expect(r.code, r.stderr).toBe(0);
      expect((await ourDecrypt(r.stdout, aliceId())).equals(data)).toBe(true);
    });
  }

  it('several recipients both ways: each key alone decrypts', async () => {
    const data = randomBytes(CHUNK * 2 + 9);
    const ours = path.join(dir, 'multi.age');
    fs.writeFileSync(ours, await ourEncrypt(data, [parseRecipient(alice.recipient, 'a'), parseRecipient(bob.recipient, 'b')]));
    for (const k of [alice, bob]) {
      const r = age(['-d', '-i', k.file, ours]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.equals(data)).toBe(true);
    }
    const theirs = age(['-e', '-r', alice.recipient, '-r', bob.recipient], data);
    expect(theirs.code).toBe(0);
    const bobId = parseIdentityText(fs.readFileSync(bob.file, 'utf8'), bob.file);
    expect((await ourDecrypt(theirs.stdout, bobId)).equals(data)).toBe(true);
    expect((await ourDecrypt(theirs.stdout, aliceId())).equals(data)).toBe(true);
  });

  it('passphrase: ours -> age -d, and age -p -> ours', async () => {
    const data = randomBytes(CHUNK + 5);
    const pass = 'correct horse battery staple';
    const ours = path.join(dir, 'pass-ours.age');
    fs.writeFileSync(ours, await ourEncrypt(data, [passphraseRecipient(pass, 12)]));
    const out = path.join(dir, 'pass-ours.out');
    const d = ageWithPassphrase(['-d', '-o', out, ours], pass);
    expect(d.code, d.stderr).toBe(0);
    expect(fs.readFileSync(out).equals(data)).toBe(true);

    const plain = path.join(dir, 'pass-plain');
    fs.writeFileSync(plain, data);
    const theirs = path.join(dir, 'pass-theirs.age');
    const e = ageWithPassphrase(['-p', '-o', theirs, plain], pass);
    expect(e.code, e.stderr).toBe(0);
    expect(fs.readFileSync(theirs, 'latin1')).toContain('-> scrypt ');
    expect((await ourDecrypt(fs.readFileSync(theirs), [passphraseIdentity(pass, 'test')])).equals(data)).toBe(true);
  });

  it('age -d refuses our file with a flipped byte, a truncation, or the wrong key; so do we with theirs', async () => {
    const data = randomBytes(CHUNK * 2 + 100);
    const sealed = await ourEncrypt(data, [parseRecipient(alice.recipient, 'a')]);
    const flipped = Buffer.from(sealed);
    flipped[sealed.length - 70_000] ^= 0x40;
    const cases: [string, Buffer, string][] = [
      ['flipped', flipped, alice.file],
      ['truncated', sealed.subarray(0, sealed.length - 20), alice.file],
      ['wrong key', sealed, bob.file],
    ];
    for (const [name, bytes, key] of cases) {
      const f = path.join(dir, `bad-${name}.age`);
      fs.writeFileSync(f, bytes);
      const r = age(['-d', '-i', key, f]);
      expect(r.code, `age -d accepted the ${name} file`).not.toBe(0);
    }
    const theirs = age(['-e', '-r', alice.recipient], data).stdout;
    const theirsFlipped = Buffer.from(theirs);
    theirsFlipped[theirs.length - 70_000] ^= 0x40;
    await expect(ourDecrypt(theirsFlipped, aliceId())).rejects.toThrow(/authentication failed/);
    await expect(ourDecrypt(theirs.subarray(0, theirs.length - 20), aliceId())).rejects.toThrow(/authentication failed|truncated/);
    await expect(ourDecrypt(theirs, parseIdentityText(fs.readFileSync(bob.file, 'utf8'), bob.file))).rejects.toThrow(/cannot be decrypted: it is encrypted to 1 X25519/);
  });
});
