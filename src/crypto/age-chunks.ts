import { createCipheriv, createDecipheriv, type Hash } from 'node:crypto';

/**
 * The age STREAM payload's chunk operations, as pure functions over a run of chunks, so the same
 * code seals and opens on the calling thread (small streams) and in age-worker.ts (large ones): the
 * bytes are the same either way. ChaCha20-Poly1305 under nonce = 11-byte big-endian counter ||
 * last-chunk flag.
 */
export const CHUNK = 64 * 1024;
export const TAG = 16;
export const SEALED = CHUNK + TAG;

export function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // bytes 0-4 stay zero: 2^48 chunks is 16 EiB
  n[11] = last ? 1 : 0;
  return n;
}

/**
 * Seals `data` as chunks numbered from `counter`, every chunk CHUNK bytes but the last; with `final`
 * its last chunk carries the last-chunk flag (an empty `data` is then one empty final chunk).
 * The plaintext is hashed into `hash` on the way. Returns the sealed bytes, one buffer.
 */
export function sealRun(key: Buffer, data: Buffer, counter: number, final: boolean, hash?: Hash): Buffer {
  hash?.update(data);
  const chunks = Math.max(1, Math.ceil(data.length / CHUNK));
  const out = Buffer.allocUnsafe(data.length + chunks * TAG);
  let o = 0;
  for (let i = 0; i < chunks; i++) {
    const piece = data.subarray(i * CHUNK, Math.min(data.length, (i + 1) * CHUNK));
    const c = createCipheriv('chacha20-poly1305', key, chunkNonce(counter + i, final && i === chunks - 1), { authTagLength: TAG });
    o += c.update(piece).copy(out, o);
    c.final();
    o += c.getAuthTag().copy(out, o);
  }
  return out;
}

export type OpenRun = { plain: Buffer } | { error: string };

/**
 * Opens the sealed chunks in `data`, numbered from `counter`: SEALED bytes each, except the last of a
 * `final` run, which is the stream's final chunk (checked as age says: never empty unless it is the
 * only one). The plaintext is hashed into `hash`. A chunk that fails authentication ends the run with
 * an error naming it; nothing of that run is returned.
 */
export function openRun(key: Buffer, data: Buffer, counter: number, final: boolean, hash?: Hash): OpenRun {
  const full = final ? Math.max(0, Math.ceil(data.length / SEALED) - 1) : data.length / SEALED;
  const lastLen = final ? data.length - full * SEALED : 0;
  if (final) {
    if (lastLen < TAG) return { error: 'the age file is truncated (the final chunk is missing)' };
    if (lastLen === TAG && counter + full > 0) return { error: 'the age file ends with an empty chunk (not allowed)' };
  }
  const out = Buffer.allocUnsafe(full * CHUNK + (final ? lastLen - TAG : 0));
  let o = 0;
  const count = full + (final ? 1 : 0);
  for (let i = 0; i < count; i++) {
    const last = final && i === count - 1;
    const sealed = data.subarray(i * SEALED, last ? data.length : (i + 1) * SEALED);
    const d = createDecipheriv('chacha20-poly1305', key, chunkNonce(counter + i, last), { authTagLength: TAG });
    d.setAuthTag(sealed.subarray(sealed.length - TAG));
    const plain = d.update(sealed.subarray(0, sealed.length - TAG));
    try {
      d.final();
    } catch {
      return {
        error: last
          ? 'authentication failed at the final chunk: the file was altered or truncated'
          : `authentication failed at chunk ${counter + i}: the file was altered or truncated`,
      };
    }
    o += plain.copy(out, o);
  }
  hash?.update(out);
  return { plain: out };
}
