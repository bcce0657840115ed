import { createHash, type Hash } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort } from 'node:worker_threads';
import { openRun, sealRun } from './age-chunks.js';

/**
 * A worker thread of one age stream (age-stream.ts): seals or opens the runs of chunks it is sent, in
 * order, hashing the plaintext as it goes; buffers travel both ways transferred, not copied. One worker
 * serves one stream, so the running hash is the stream's.
 */
export type AgeJob =
  | { op: 'init'; key: Uint8Array; hash: boolean }
  | { op: 'seal' | 'open'; id: number; data: ArrayBuffer; length: number; counter: number; final: boolean };

export type AgeReply = { id: number; out: ArrayBuffer; offset: number; length: number; sha256?: string; back: ArrayBuffer } | { id: number; error: string };

let key: Buffer | undefined;
let hash: Hash | undefined;
let runs = 0;

// Every chunk's cipher output is a new 64 KiB buffer outside the V8 heap, and this thread's heap hardly
// grows, so V8 collected them only every ~64 MB of them: 40 MB more peak RSS for an encrypted backup. A
// minor collection every few runs (well under a millisecond on this tiny heap) frees them as they die.
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as ((o: { type: 'minor' }) => void) | undefined;

parentPort?.on('message', (job: AgeJob) => {
  if (job.op === 'init') {
    key = Buffer.from(job.key);
    hash = job.hash ? createHash('sha256') : undefined;
    return;
  }
  try {
    const data = Buffer.from(job.data, 0, job.length);
    let out: Buffer;
    if (job.op === 'seal') out = sealRun(key!, data, job.counter, job.final, hash);
    else {
      const r = openRun(key!, data, job.counter, job.final, hash);
      if ('error' in r) {
        parentPort?.postMessage({ id: job.id, error: r.error } satisfies AgeReply);
        return;
      }
      out = r.plain;
    }
    const sha256 = job.final ? hash?.digest('hex') : undefined;
    // a buffer of its own is transferred whole; a slice of Node's shared pool is copied out first
    let own = out;
    if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) {
      own = Buffer.allocUnsafeSlow(out.length);
      out.copy(own);
    }
    // the input buffer goes back too, for the stream to fill again
    const reply: AgeReply = { id: job.id, out: own.buffer as ArrayBuffer, offset: own.byteOffset, length: own.length, sha256, back: job.data };
    parentPort?.postMessage(reply, [reply.out, reply.back]);
    if (++runs % 4 === 0) collect?.({ type: 'minor' });
  } catch (err) {
    parentPort?.postMessage({ id: job.id, error: `the age thread failed: ${String((err as Error)?.message ?? err)}` } satisfies AgeReply);
  }
});
