// Synthetic backups for the catalog benches (bench/run.mjs's catalog group, bench/serve.mjs).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';

/** Synthetic backups straight in the layout of DESIGN.md section 3: sidecars and tiny artifacts. */
export function syntheticCatalog(dir, count) {
  // an empty tar (two zero blocks), gzipped; the database artifact is just a header: list and stats never open them
  const tiny = { database: Buffer.from('SQLite format 3\0'), storage: gzipSync(Buffer.alloc(1024)) };
  for (const t of ['database', 'storage', 'full']) fs.mkdirSync(path.join(dir, t), { recursive: true, mode: 0o700 });
  const start = Date.UTC(2023, 0, 1);
  const id = (i) => new Date(start + i * 3_600_000).toISOString().replace(/[-:]/g, '').replace('T', '_').slice(0, 15);
  let made = 0;
  for (let i = 0; made < count; i++) {
    const base = {
      format: 1,
      tool: { name: 'vertex-backup', version: 'bench' },
      timestamp: id(i),
      created_at: new Date(start + i * 3_600_000).toISOString(),
      duration_ms: 10,
    };
    const components = {};
    for (const type of ['database', 'storage']) {
      const name = type === 'database' ? `db_backup_${id(i)}.db` : `storage_backup_${id(i)}.tar.gz`;
      const data = tiny[type];
      fs.writeFileSync(path.join(dir, type, name), data, { mode: 0o600 });
      const sidecar = {
        ...base,
        id: id(i),
        type,
        original_path: type === 'database' ? '/srv/app/app_data.db' : '/srv/app/storage',
        backup_path: name,
        file_size: data.length,
        checksum: createHash('sha256').update(data).digest('hex'),
        compression: type === 'storage' ? 'gzip' : undefined,
        file_count: type === 'storage' ? 1 : undefined,
      };
      fs.writeFileSync(path.join(dir, type, `${name.replace(/\.(db|tar\.gz)$/, '')}.json`), JSON.stringify(sidecar, null, 2), { mode: 0o600 });
      components[type] = id(i);
      made++;
    }
    if (made < count && i % 2 === 0) {
      const full = { ...base, id: id(i), type: 'full', database: components.database, storage: components.storage, status: 'ok' };
      fs.writeFileSync(path.join(dir, 'full', `full_backup_${id(i)}.json`), JSON.stringify(full, null, 2), { mode: 0o600 });
      made++;
    }
  }
}
