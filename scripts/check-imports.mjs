#!/usr/bin/env node
// The layering rule of DESIGN.md section 2, checked from the source text: no import from a lower room
// to a higher one, and no circle of files. Part of `npm run lint`.
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'src');

// higher number = higher floor; a file may import only from its own floor or lower ones (its own room
// excepted: files of one room import each other freely, circles aside)
const FLOORS = {
  'index.ts': 9,
  cli: 8,
  api: 8,
  results: 7.5,
  ops: 7,
  offsite: 6,
  sources: 5,
  notify: 5,
  schedule: 5,
  archive: 4,
  'config.ts': 4,
  'postgres-settings.ts': 4,
  catalog: 3,
  remote: 2,
  crypto: 2,
  codec: 1,
  'errors.ts': 0,
  'fsutil.ts': 0,
  'secrets.ts': 0,
  'version.ts': 0,
  'human.ts': 0,
};

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^'";]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const room = (file) => path.relative(root, file).split(path.sep)[0];
const files = walk(root);
const graph = new Map();
const problems = [];
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const deps = new Set();
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    const target = path.resolve(path.dirname(file), spec).replace(/\.js$/, '.ts');
    if (!fs.existsSync(target)) continue;
    deps.add(target);
    const from = room(file);
    const to = room(target);
    if (from === to) continue;
    if (FLOORS[from] === undefined) problems.push(`${path.relative(root, file)}: room ${from} has no floor in scripts/check-imports.mjs`);
    else if (FLOORS[to] === undefined) problems.push(`${path.relative(root, target)}: room ${to} has no floor in scripts/check-imports.mjs`);
    else if (FLOORS[to] > FLOORS[from]) problems.push(`src/${path.relative(root, file)} imports src/${path.relative(root, target)}: ${from}/ (floor ${FLOORS[from]}) must not import from ${to}/ (floor ${FLOORS[to]})`);
  }
  graph.set(file, deps);
}

// Tarjan's strongly connected components: every component of more than one file is a circle
let index = 0;
const idx = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
function strong(v) {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v), low.get(w)));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), idx.get(w)));
  }
  if (low.get(v) === idx.get(v)) {
    const comp = [];
    let w;
    do {
      w = stack.pop();
      onStack.delete(w);
      comp.push(w);
    } while (w !== v);
    if (comp.length > 1) problems.push(`import circle: ${comp.map((f) => `src/${path.relative(root, f)}`).join(' -> ')}`);
  }
}
for (const f of graph.keys()) if (!idx.has(f)) strong(f);

if (problems.length) {
  for (const p of problems) console.error(p);
  console.error(`check-imports: ${problems.length} problem(s) in the import graph (DESIGN.md section 2: layers run one way, no circles)`);
  process.exit(1);
}
console.log(`check-imports: ${files.length} files, layers run one way, no circles`);
