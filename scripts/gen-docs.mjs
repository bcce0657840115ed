#!/usr/bin/env node
// Writes docs/commands.md and man/*.1 from the command definitions (run by `npm run docs` after the
// build). With --check it writes nothing and exits 1 naming the stale files (the test runs that).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildProgram } from '../dist/cli/program.js';
import { renderManPages, renderMarkdown } from '../dist/cli/reference.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const check = process.argv.includes('--check');
const program = buildProgram();
const want = new Map([['docs/commands.md', renderMarkdown(program)]]);
for (const [name, text] of renderManPages(program)) want.set(`man/${name}`, text);
const stale = [];
for (const [rel, text] of want) {
  const file = path.join(root, rel);
  const have = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
  if (have === text) continue;
  stale.push(rel);
  if (!check) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  }
}
// a man page of a command that no longer exists
const manDir = path.join(root, 'man');
for (const f of fs.existsSync(manDir) ? fs.readdirSync(manDir) : []) {
  if (!f.endsWith('.1') || want.has(`man/${f}`)) continue;
  stale.push(`man/${f}`);
  if (!check) fs.rmSync(path.join(manDir, f));
}
if (check && stale.length) {
  console.error(`stale generated files (run: npm run docs): ${stale.join(', ')}`);
  process.exit(1);
}
if (!check) console.log(stale.length ? `wrote ${stale.join(', ')}` : 'generated files are up to date');
