import { describe, expect, it } from 'vitest';
import { validateSidecar } from '../../src/catalog/sidecar.js';

const id = '20240101_000000';
const db = (extra: Record<string, unknown> = {}) => ({
  format: 1, tool: { name: 'vertex-backup', version: 't' }, id, type: 'database', timestamp: id, created_at: '2024-01-01T00:00:00Z',
  duration_ms: 5, backup_path: `database_backup_${id}.db.gz`, file_size: 10, checksum: 'a'.repeat(64), compression: 'gzip', ...extra,
});

// The reason a sidecar is unusable becomes the damaged backup's reason in list/verify: one line, naming what is wrong.
describe('validateSidecar', () => {
  it('accepts what the tool writes, unknown fields (a newer tool) and a minimal hand-written one', () => {
    expect(validateSidecar(db(), 'database', id)).toBeUndefined();
    expect(validateSidecar(db({ added_later: { x: 1 } }), 'database', id)).toBeUndefined();
    expect(validateSidecar({ format: 1, id, type: 'storage', backup_path: 'x.tar.gz', file_size: 1, checksum: 'b' }, 'storage', id)).toBeUndefined();
    expect(validateSidecar({ format: 1, id, type: 'full', status: 'partial', database: null }, 'full', id)).toBeUndefined();
  });

  it('names the first problem', () => {
    expect(validateSidecar([], 'database', id)).toBe('metadata is not a JSON object');
    expect(validateSidecar(db({ format: 2 }), 'database', id)).toBe('unknown metadata format 2');
    expect(validateSidecar(db(), 'storage', id)).toBe("metadata type 'database' does not match its directory 'storage'");
    expect(validateSidecar(db({ id: 'x' }), 'database', id)).toBe("metadata id 'x' does not match its file name");
    expect(validateSidecar({ format: 1, id, type: 'full' }, 'full', id)).toBe('metadata has no valid status');
    expect(validateSidecar(db({ checksum: undefined }), 'database', id)).toBe('metadata lacks backup_path, checksum or file_size');
    expect(validateSidecar(db({ compression: 'lz4' }), 'database', id)).toBe('unknown compression "lz4"');
    expect(validateSidecar(db({ compression: 7 }), 'database', id)).toBe('unknown compression 7');
    expect(validateSidecar(db({ parts: [{ file: 'a', size: '1', checksum: 'c' }] }), 'database', id)).toBe('metadata has malformed parts');
    expect(validateSidecar(db({ parts: 'a' }), 'database', id)).toBe('metadata has malformed parts');
  });

  it('confines parts to the sidecar directory', () => {
    for (const file of ['../x', 'a/b', 'a\\b', '..', '.', '', 'a\0b', '/etc/passwd']) {
      expect(validateSidecar(db({ parts: [{ file, size: 1, checksum: 'c' }] }), 'database', id)).toBe(`metadata names ${JSON.stringify(file)}, which is not a file in its own directory`);
    }
  });

  it('checks the shape of the optional fields it describes, naming the field', () => {
    expect(validateSidecar(db({ sqlite: { page_size: 'big' } }), 'database', id)).toBe('metadata field sqlite.page_size is "big", expected number');
    expect(validateSidecar(db({ exclude: 'cache' }), 'database', id)).toBe('metadata field exclude is "cache", expected Array');
    expect(validateSidecar(db({ encryption: { format: 'gpg', recipients: [], plaintext_size: 1 } }), 'database', id)).toBe('metadata field encryption.format is "gpg", expected "age"');
  });
});
