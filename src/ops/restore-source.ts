import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { type BackupEntry, findBackup, readSidecar } from '../catalog/local-store.js';
import { ID_PATTERN, PREFIX, parseName, TYPE_DIR } from '../catalog/names.js';
import { BACKUP_TYPES, type BackupType, SIDECAR_FORMAT, type Sidecar } from '../catalog/sidecar.js';
import { BackupError, usageError } from '../errors.js';

/** What `restore REF` reads: a backup of a backup directory, or a file named by path with or without a sidecar. */
export interface RestoreSource {
  /** the backup directory its components are looked up in */
  sourceDir: string;
  entry: BackupEntry;
  /** a file restored without a sidecar beside it: no checksum could be checked */
  unverifiable?: boolean;
}

const looksLikePath = (ref: string) => ref.includes('/') || ref.endsWith('.json') || /\.(db|sqlite3?|tar(\.\w+)?|part\d{3,})$/.test(ref);

/** The type of a backup file by its first bytes: a SQLite header, a compression magic, a tar header. */
async function sniff(file: string): Promise<{ type: BackupType; compression?: string } | undefined> {
  const fh = await fsp.open(file, 'r');
  const head = Buffer.alloc(512);
  try {
    await fh.read(head, 0, 512, 0);
  } finally {
    await fh.close();
  }
  if (head.subarray(0, 16).toString('latin1') === 'SQLite format 3\0') return { type: 'database' };
  if (head[0] === 0x1f && head[1] === 0x8b) return { type: 'storage', compression: 'gzip' };
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return { type: 'storage', compression: 'xz' };
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return { type: 'storage', compression: 'bzip2' };
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return { type: 'storage', compression: 'zstd' };
  if (head.subarray(257, 262).toString('latin1') === 'ustar') return { type: 'storage', compression: 'none' };
  return undefined;
}

/**
 * Resolves what the user typed. An id or `latest` names a backup of the backup directory. A path names
 * exactly that file: a backup of a backup directory when it lies in one (that directory or another);
 * elsewhere, the backup its own sidecar describes when one lies beside it, else the file alone, typed by
 * its content (SQLite header, compression magic), to be checked without a checksum.
 */
export async function resolveRestoreSource(backupDir: string, ref: string): Promise<RestoreSource> {
  const notFound = () => new BackupError('USAGE', `no backup '${ref}' in ${backupDir}`, { hint: 'run vertex-backup list to see the ids' });
  const file = path.resolve(ref);
  const isId = ref === 'latest' || ID_PATTERN.test(ref);
  const st = isId ? undefined : await fsp.stat(file).catch(() => undefined);
  if (!st) {
    // an id, `latest`, or the bare name of a backup file of the backup directory
    const entry = ref.includes('/') ? undefined : await findBackup(backupDir, ref);
    if (entry) return { sourceDir: backupDir, entry };
    if (looksLikePath(ref)) throw usageError(`backup file not found: ${file}`, 'give a backup id (see vertex-backup list) or the path of a backup file');
    throw notFound();
  }
  if (!st.isFile()) throw usageError(`not a backup file: ${file}`, 'give a backup id or the path of a backup file or its .json sidecar');
  const dir = path.dirname(file);
  const name = path.basename(file);
  const parsed = parseName(name);

  // inside a backup directory layout (<dir>/database|storage|full/<name>): that directory's backup, if it is this file's
  const typeDirName = path.basename(dir);
  if (parsed && TYPE_DIR[parsed.type] === typeDirName) {
    const layout = path.dirname(dir);
    const entry = await findBackup(layout, name, parsed.type);
    if (entry && (entry.sidecarPath === file || entry.files.includes(file))) return { sourceDir: layout, entry };
  }

  // elsewhere: the sidecar beside it, when it describes this very file
  let sidecarFile: string | undefined;
  let type: BackupType | undefined;
  let id: string | undefined;
  if (parsed) {
    type = parsed.type;
    id = parsed.id;
    sidecarFile = name.endsWith('.json') ? file : path.join(dir, `${PREFIX[parsed.type]}${parsed.id}.json`);
  } else if (name.endsWith('.json')) {
    const data = JSON.parse(await fsp.readFile(file, 'utf8').catch(() => '{}')) as Partial<Sidecar>;
    if (data && BACKUP_TYPES.includes(data.type as BackupType) && typeof data.id === 'string') {
      type = data.type as BackupType;
      id = data.id;
      sidecarFile = file;
    }
  }
  // metadata of the seed's system (no `format`) carries no checksum we can use: the file is read alone
  const ours =
    sidecarFile &&
    (await fsp
      .readFile(sidecarFile, 'utf8')
      .then(
        (t) => (JSON.parse(t) as Partial<Sidecar>)?.format !== undefined,
        (err: NodeJS.ErrnoException) => err.code !== 'ENOENT',
      )
      .catch(() => true));
  if (sidecarFile && type && id && ours) {
    if (type === 'full')
      throw usageError(
        `${file} is a full backup outside a backup directory`,
        'restore it by id from its backup directory (--backup-dir DIR), or restore its database and storage files by path',
      );
    const { sidecar, error } = await readSidecar(sidecarFile, type, id);
    if (!sidecar)
      throw new BackupError('DAMAGED', `the metadata beside ${file} is unusable: ${error}`, {
        hint: 'remove or fix it to restore the file without a checksum',
      });
    const files = (sidecar.parts?.length ? sidecar.parts.map((p) => p.file) : [path.basename(sidecar.backup_path ?? '')]).map((f) => path.join(dir, f));
    if (file !== sidecarFile && !files.includes(file)) {
      throw new BackupError('DAMAGED', `${sidecarFile} describes other files than ${file}`, {
        hint: 'remove or fix that metadata to restore the file without a checksum',
      });
    }
    const entry: BackupEntry = {
      type,
      id,
      status: 'ok',
      createdAt: new Date(sidecar.created_at ?? Number.NaN),
      size: sidecar.file_size ?? 0,
      sidecarPath: sidecarFile,
      sidecar,
      files: [...files, sidecarFile],
    };
    return { sourceDir: dir, entry };
  }
  if (name.endsWith('.json')) throw usageError(`${file} is not the metadata of a backup`);

  // a level N archive holds only what changed since the backup before it: alone, it is not the tree
  if (parsed?.type === 'storage') {
    const level = (await findBackup(backupDir, parsed.id, 'storage').catch(() => undefined))?.sidecar?.level;
    if (level !== undefined && level > 0) {
      throw usageError(
        `${file} is the archive of incremental storage backup ${parsed.id} (level ${level}): it holds only what changed since the backup before it`,
        `restore the backup by its id, which reads every archive it needs: vertex-backup restore ${parsed.id}`,
      );
    }
  }

  // no sidecar: the file alone, typed by its content
  const kind = await sniff(file);
  if (!kind)
    throw usageError(
      `${file} is neither a SQLite database nor a tar archive (plain or gzip, xz, bzip2, zstd)`,
      'give a backup id or the path of a backup file',
    );
  const sidecar: Sidecar = {
    format: SIDECAR_FORMAT,
    id: id ?? name,
    type: kind.type,
    backup_path: name,
    file_size: st.size,
    checksum: '',
    compression: kind.compression,
  } as Sidecar;
  const entry: BackupEntry = {
    type: kind.type,
    id: id ?? name,
    status: 'ok',
    createdAt: st.mtime,
    size: st.size,
    sidecarPath: path.join(dir, `.${name}.no-sidecar.json`),
    sidecar,
    files: [file],
  };
  return { sourceDir: dir, entry, unverifiable: true };
}
