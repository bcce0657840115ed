// Builds a small demo application under ./demo: a SQLite database in WAL mode (the way the real
// application runs it) and a media tree with images, videos and AR markers.
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

const root = process.argv[2] ?? 'demo';
rmSync(join(root, 'app_data'), { recursive: true, force: true });
rmSync(join(root, 'storage'), { recursive: true, force: true });
mkdirSync(join(root, 'app_data'), { recursive: true });

const db = new Database(join(root, 'app_data', 'app_data.db'));
db.pragma('journal_mode = WAL');
db.exec(`CREATE TABLE clients(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE portraits(id INTEGER PRIMARY KEY, client_id INTEGER REFERENCES clients(id), storage_path TEXT, created_at INTEGER);
CREATE TABLE scan_events(id INTEGER PRIMARY KEY, portrait_id INTEGER, ts INTEGER, country TEXT);`);
const insClient = db.prepare('INSERT INTO clients(name) VALUES (?)');
const insPortrait = db.prepare('INSERT INTO portraits(client_id, storage_path, created_at) VALUES (?, ?, ?)');
const insEvent = db.prepare('INSERT INTO scan_events(portrait_id, ts, country) VALUES (?, ?, ?)');
db.transaction(() => {
  for (let c = 1; c <= 5; c++) insClient.run(`Studio ${c}`);
  for (let p = 1; p <= 40; p++) {
    const client = 1 + (p % 5);
    insPortrait.run(client, `portraits/${client}/${p}`, 1_700_000_000 + p * 3600);
    const dir = join(root, 'storage', 'portraits', String(client), String(p));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'image.jpg'), randomBytes(20_000 + p * 500));
    writeFileSync(join(dir, 'marker.fset'), `${'0.1234 5.6789 '.repeat(400 + p)}\n`);
  }
  for (let e = 1; e <= 20_000; e++) insEvent.run(1 + (e % 40), 1_700_000_000 + e, ['DE', 'FR', 'RU'][e % 3]);
})();
db.close();
mkdirSync(join(root, 'storage', 'videos'), { recursive: true });
for (let v = 1; v <= 3; v++) writeFileSync(join(root, 'storage', 'videos', `${v}.mp4`), randomBytes(2 * 1024 * 1024));
mkdirSync(join(root, 'storage', 'uploads', 'tmp'), { recursive: true });
console.log(`demo application ready in ${root}/ (app_data/app_data.db, storage/)`);
