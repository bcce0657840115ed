import { readFileSync } from 'node:fs';

/** Read once from package.json so the sidecar's `tool.version` can never drift from the release. */
export const VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
})();

export const TOOL = { name: 'vertex-backup', version: VERSION };
