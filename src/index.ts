export { BackupError, EXIT_CODES, type ErrorCode } from './errors.js';
export { resolveConfig, type Config, type ConfigFlags } from './config.js';
export type { BackupType, Sidecar, PartInfo, SqliteInfo } from './catalog/sidecar.js';
export { listBackups, findBackup, type BackupEntry, type BackupStatus } from './catalog/local-store.js';
export { acquireLock, withLock, type Lock, type LockHolder } from './catalog/lock.js';
export { createBackup, runCreate, type CreateOptions, type CreateResult, type CreatedBackup } from './ops/create.js';
export { verifyBackups, verifyEntry, type VerifyReport, type VerifyResult } from './ops/verify.js';
export { restoreBackup, type RestoreOptions, type RestoreResult, type RestorePlan } from './ops/restore.js';
export { healInterruptedRestore } from './ops/restore-journal.js';
export { rotateBackups, runRotate, type RotateOptions, type RotateResult } from './ops/rotate.js';
export { getStats, type Stats } from './ops/stats.js';
export type { ProgressEvent, ProgressFn } from './ops/progress.js';
export { getCodec, registerCodec } from './codec/registry.js';
export type { Codec } from './codec/codec.js';
export type { StorageRunOptions } from './ops/create.js';
export { lsBackup, type LsResult, type ListedPath } from './ops/ls.js';
export { diffBackups, type DiffResult } from './ops/diff.js';
export { dumpFile, type DumpOptions, type Dumped } from './ops/dump.js';
export { readManifest, readView, type ManifestRecord } from './archive/manifest.js';
export type { EncryptionInfo } from './catalog/sidecar.js';
export { createEncryptStream, createDecryptStream, type AgeEncryptStream, type AgeDecryptStream } from './crypto/age-stream.js';
export {
  generateIdentity,
  identityFileText,
  parseIdentityText,
  parseRecipient,
  parseRecipientsText,
  passphraseIdentity,
  passphraseRecipient,
  type Identity,
  type Recipient,
} from './crypto/age-keys.js';
export { rekeyBackups, type RekeyedFile } from './ops/rekey.js';
export { runDrill, recoveryPoints, type DrillOptions, type DrillResult } from './ops/drill.js';
export { verifySample, type SampledVerifyReport, type Coverage } from './ops/sample.js';
export { collectMetrics, renderMetrics, writeMetricsFile } from './notify/metrics.js';
