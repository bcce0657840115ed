import { parentPort } from 'node:worker_threads';
import { compressBlock } from './pgzip-block.js';

/**
 * A worker thread of the parallel gzip compressor: compresses the blocks pgzip.ts sends it and sends
 * back the output and the input buffer, both transferred (no copy), with the block's CRC-32.
 */
export interface BlockRequest {
  id: number;
  /** the block's bytes: the first `length` of this transferred buffer */
  block: ArrayBuffer;
  length: number;
  /** the input just before the block (at most 32 KiB) */
  tail: Uint8Array;
  level: number;
}

export type BlockReply = { id: number; output: ArrayBuffer; crc: number; block: ArrayBuffer } | { id: number; error: string };

parentPort?.on('message', (req: BlockRequest) => {
  try {
    const block = Buffer.from(req.block, 0, req.length);
    const tail = Buffer.from(req.tail.buffer, req.tail.byteOffset, req.tail.byteLength);
    const { output, crc } = compressBlock(block, tail, req.level);
    const reply: BlockReply = { id: req.id, output: output.buffer as ArrayBuffer, crc, block: req.block };
    parentPort?.postMessage(reply, [reply.output, reply.block]);
  } catch (err) {
    parentPort?.postMessage({ id: req?.id ?? -1, error: String((err as Error)?.message ?? err) } satisfies BlockReply);
  }
});
