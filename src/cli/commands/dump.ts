import type { Command } from 'commander';
import { pipeline } from 'node:stream/promises';
import { manifestCommand } from '../manifest-command.js';
import { nameArg } from '../name-args.js';

export function register(program: Command): void {
  manifestCommand(
    program,
    {
      name: 'dump',
      args: [
        ['<backup>', 'storage or full backup id (or "latest")'],
        ['<file>', 'the file, relative to the storage directory'],
      ],
      description: 'write one file of a storage backup to stdout (with --json: its manifest record instead)',
      examples: ['dump latest images/photo.jpg > photo.jpg', 'dump 20240101_120000 notes.txt --json'],
    },
    async (ctx, [ref, file], identities) => {
      const { dumpFile } = await import('../../ops/dump.js');
      const d = await dumpFile(ctx.cfg.backupDir, ref, nameArg(file), { identities });
      const { path: _p, ...meta } = d.record;
      if (ctx.global.json) {
        d.content.destroy();
        return { json: { id: d.id, path: file, type: 'file', size: meta.s, mode: meta.m, uid: meta.u, gid: meta.g, sha256: meta.h, archive: meta.a } };
      }
      // the content is the output: bytes, straight to stdout
      await pipeline(d.content, process.stdout, { end: false });
      return { json: null };
    },
  );
}
