import type { Command } from 'commander';
import { pipeline } from 'node:stream/promises';
import { action } from '../run.js';
import { nameArg } from '../name-args.js';

export function register(program: Command): void {
  program
    .command('dump')
    .argument('<backup>', 'storage or full backup id (or "latest")')
    .argument('<file>', 'the file, relative to the storage directory')
    .description('write one file of a storage backup to stdout (with --json: its manifest record instead)')
    .addHelpText('after', '\nExamples:\n  vertex-backup dump latest images/photo.jpg > photo.jpg\n  vertex-backup dump 20240101_120000 notes.txt --json')
    .action(
      action('dump', async (ctx, cmd) => {
        const [ref, file] = cmd.args as string[];
        const { dumpFile } = await import('../../ops/dump.js');
        const d = await dumpFile(ctx.cfg.backupDir, ref, nameArg(file));
        const { path: _p, ...meta } = d.record;
        if (ctx.global.json) {
          d.content.destroy();
          return { json: { id: d.id, path: file, type: 'file', size: meta.s, mode: meta.m, uid: meta.u, gid: meta.g, sha256: meta.h, archive: meta.a } };
        }
        // the content is the output: bytes, straight to stdout
        await pipeline(d.content, process.stdout, { end: false });
        return { json: null };
      }),
    );
}
