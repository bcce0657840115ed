import { Option } from 'commander';

/** Options several commands share, worded once. */

// not BACKUP_TYPES from catalog/sidecar.ts: that module loads the schema library, which --help need not
const TYPES = ['full', 'database', 'storage'] as const;

export const REMOTES_CONFIG_HELP = 'remotes config file (env REMOTES_CONFIG, default ./remote_storage.json)';

export const typeOption = (description = 'only this type'): Option => new Option('-t, --type <type>', description).choices(TYPES);

export const remotesConfigOption = (): Option => new Option('--remotes-config <file>', REMOTES_CONFIG_HELP);

export const waitOption = (): Option => new Option('--wait <seconds>', 'wait this long for another run to finish instead of exiting with code 4').default('0');
