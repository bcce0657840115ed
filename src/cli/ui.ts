import { Chalk, type ChalkInstance } from 'chalk';
import { redact } from '../secrets.js';
import { jsonText } from '../results/json.js';
import { createRequire } from 'node:module';

// loaded when a table is printed: most runs (the nightly create above all) print none
const loadTable = (): typeof import('cli-table3') => createRequire(import.meta.url)('cli-table3');

/**
 * A name as a terminal may show it: control characters (ESC, BEL, newline, DEL, C1) written as
 * escapes, so a name in a backup can neither move the cursor nor fake a line of output.
 */
export function printableName(name: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters escaped
  return name.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, escapeChar);
}

function escapeChar(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\t') return '\\t';
  if (c === '\r') return '\\r';
  const code = c.charCodeAt(0);
  return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
}

/**
 * Every line the terminal gets, as a last guard: names and fields from a backup directory or a remote
 * reach messages in many places, and an ESC or BEL in them must not drive the terminal. Line breaks and
 * tabs are the output's own (tables, hints); colour codes are kept only when this run adds colour.
 */
export function terminalText(line: string, colour: boolean): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters a terminal would act on
  return line.replace(/\x1b\[[0-9;]*m|[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, (m) =>
    m.length > 1 && colour ? m : m.length > 1 ? `\\x1b${m.slice(1)}` : escapeChar(m),
  );
}

export interface UiOptions {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  color: boolean;
}

/**
 * Everything the terminal sees goes through here: colours only on a TTY without NO_COLOR, spinners only
 * on an interactive stderr and never with --json, and every line passes the secret filter.
 */
export class Ui {
  readonly c: ChalkInstance;
  readonly interactive: boolean;
  private spinner?: { text: string; stop(): void; start(): unknown };
  private spinnerPending?: Promise<void>;
  /** what the run said (stdout and stderr lines, --quiet or not), for the healthcheck ping's body */
  private said: string[] = [];
  private saidBytes = 0;

  constructor(readonly opts: UiOptions) {
    const colorOk = opts.color && !process.env.NO_COLOR && process.stdout.isTTY === true && process.env.TERM !== 'dumb';
    this.c = new Chalk({ level: colorOk ? 1 : 0 });
    // a terminal that reports no width (a serial console, a pty nobody sized) sends ora's line counting
    // into an endless loop of cursor moves: such a terminal gets the plain progress lines instead
    const sized = (process.stderr.columns ?? 0) > 0;
    this.interactive = process.stderr.isTTY === true && sized && !opts.json && !opts.quiet && !process.env.INVOCATION_ID && !process.env.CI;
  }

  private safe(line: string): string {
    return terminalText(line, this.c.level > 0);
  }

  /** The run's own lines, newest last, at most `maxBytes` of them (the oldest dropped first). */
  transcript(maxBytes = 100_000): string {
    const lines: string[] = [];
    let n = 0;
    for (let i = this.said.length - 1; i >= 0 && n + this.said[i].length + 1 <= maxBytes; i--) {
      lines.unshift(this.said[i]);
      n += Buffer.byteLength(this.said[i]) + 1;
    }
    return lines.join('\n');
  }

  private record(line: string): void {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the colour codes chalk adds on a terminal
    const plain = redact(line).replace(/\x1b\[[0-9;]*m/g, '');
    this.said.push(plain);
    this.saidBytes += plain.length + 1;
    while (this.saidBytes > 200_000 && this.said.length > 1) this.saidBytes -= this.said.shift()!.length + 1;
  }

  /** Human output on stdout (suppressed by --json and --quiet). */
  out(line = ''): void {
    this.record(line);
    if (this.opts.json || this.opts.quiet) return;
    this.stopProgress();
    process.stdout.write(`${this.safe(redact(line))}\n`);
  }

  /** Notes for the operator on stderr: warnings survive --quiet, info does not. */
  info(line: string): void {
    this.record(line);
    if (this.opts.quiet || this.opts.json) return;
    this.stopProgress();
    process.stderr.write(`${this.safe(redact(line))}\n`);
  }

  warn(line: string): void {
    this.record(`warning: ${line}`);
    this.stopProgress();
    process.stderr.write(`${this.c.yellow('warning:')} ${this.safe(redact(line))}\n`);
  }

  error(line: string, hint?: string): void {
    this.record(`error: ${line}${hint ? `\nhint: ${hint}` : ''}`);
    this.stopProgress();
    process.stderr.write(`${this.c.red('error:')} ${this.safe(redact(line))}\n`);
    if (hint) process.stderr.write(`${this.c.dim('hint:')} ${this.safe(redact(hint))}\n`);
  }

  debug(line: string): void {
    if (this.opts.verbose) process.stderr.write(`${this.safe(this.c.dim(redact(line)))}\n`);
  }

  json(value: unknown): void {
    process.stdout.write(`${jsonText(value)}\n`);
  }

  /** Shows or updates a spinner with progress text; a no-op when not interactive. */
  progress(text: string): void {
    if (!this.interactive) return;
    if (this.spinner) {
      this.spinner.text = this.safe(redact(text));
      return;
    }
    if (this.spinnerPending) return;
    // ora is loaded only when a spinner is actually shown: --help and cron runs never pay for it.
    // discardStdin would put the terminal in raw mode, so Ctrl-C would never become SIGINT.
    this.spinnerPending = import('ora').then(({ default: ora }) => {
      this.spinner = ora({ text: this.safe(redact(text)), stream: process.stderr, color: this.c.level > 0 ? 'cyan' : false, discardStdin: false }).start();
    });
  }

  stopProgress(): void {
    this.spinner?.stop();
    this.spinner = undefined;
  }

  async settle(): Promise<void> {
    await this.spinnerPending?.catch(() => {});
    this.stopProgress();
  }

  /** `multiline`: the caller's own cells hold several lines (a schedule's next runs); others are one line each. */
  table(head: string[], rows: (string | number)[][], align?: ('left' | 'right')[], multiline = false): string {
    const Table = loadTable();
    const t = new Table({
      head: head.map((h) => this.c.bold(h)),
      style: { head: [], border: [], compact: true },
      colAligns: align ?? head.map(() => 'left' as const),
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    // a cell is one line: a newline in a name or a reason from the backup directory would fake a row
    for (const r of rows) t.push(r.map((cell) => (multiline ? this.safe(String(cell)) : this.safe(String(cell)).replace(/[\n\r\t\u2028\u2029]/g, escapeChar))));
    return t.toString();
  }

  /** Columns to fit human output into: the terminal's, or 100 when stdout is not one (mail, files). */
  width(): number {
    const cols = process.stdout.isTTY ? process.stdout.columns : undefined;
    return cols && cols > 20 ? cols : 100;
  }

  status(s: string): string {
    if (s === 'ok') return this.c.green(s);
    if (s === 'partial' || s === 'incomplete' || s === 'in-progress') return this.c.yellow(s);
    return this.c.red(s);
  }
}
