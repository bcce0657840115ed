/** Progress events the core emits; only the CLI decides how (and whether) to show them. */
export interface ProgressEvent {
  phase: 'database' | 'storage' | 'verify' | 'restore' | 'rotate' | 'upload' | 'download';
  /** what is being worked on: a backup id or a file name */
  subject?: string;
  bytes?: number;
  totalBytes?: number;
  files?: number;
  totalFiles?: number;
  /** bytes written so far (compressed), beside the input bytes read */
  writtenBytes?: number;
  /** of the bytes read, those the compressor holds but has not compressed yet (only codecs that say) */
  backlogBytes?: number;
}

export type ProgressFn = (event: ProgressEvent) => void;
