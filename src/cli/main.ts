import { CommanderError } from 'commander';
import { buildProgram } from './program.js';

// `vertex-backup list | head` closes the pipe early: that is the reader's choice, not an error
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

/** --json anywhere before a `--` separator, where commander may not have parsed it yet. */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

const program = buildProgram();

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // help and version exit 0; any other parse error is bad usage
    process.exitCode = err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    if (err.code === 'commander.help') process.exitCode = 0;
    // --json promises one document whatever went wrong, a flag commander rejected included
    if (process.exitCode !== 0 && wantsJson(process.argv)) {
      const message = err.message.replace(/^error: /, '');
      process.stdout.write(`${JSON.stringify({ ok: false, error: { code: 'USAGE', exit_code: 2, message } }, null, 2)}\n`);
    }
  } else {
    throw err;
  }
}
