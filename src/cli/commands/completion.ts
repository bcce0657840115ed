import { Argument, type Command } from 'commander';

export function register(program: Command): void {
  program
    .command('completion')
    .description('print the shell completion script (bash or zsh)')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .addHelpText(
      'after',
      `
Examples:
  vertex-backup completion bash | sudo tee /etc/bash_completion.d/vertex-backup
  source <(vertex-backup completion bash)      # this shell only
  vertex-backup completion zsh > "\${fpath[1]}/_vertex-backup"`,
    )
    .action(async (shell: string) => {
      const { renderBashCompletion, renderZshCompletion } = await import('../reference.js');
      process.stdout.write(shell === 'bash' ? renderBashCompletion(program) : renderZshCompletion(program));
    });
}
