#!/usr/bin/env bash
# npm run demo: builds a small demo application under ./demo and backs it up the way the nightly
# timer does (twice: the second night stores only what changed), then lists and verifies the result.
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/make-demo.mjs demo
export DATABASE_PATH=demo/app_data/app_data.db STORAGE_PATH=demo/storage BACKUP_DIR=demo/backups
vb() { node bin/vertex-backup.js "$@"; }
echo; echo '$ vertex-backup create --type full'
vb create --type full
echo; echo '$ echo "a new upload" > demo/storage/new-upload.txt   # the next night: one file changed'
echo 'a new upload' > demo/storage/new-upload.txt
echo '$ vertex-backup create --type full'
vb create --type full
echo; echo '$ vertex-backup list   # the second storage backup is a level 1 holding only the new file'
vb list
echo; echo '$ vertex-backup verify --all'
vb verify --all
echo; echo '$ vertex-backup stats'
vb stats
echo
echo "Backups are in demo/backups. Try: DATABASE_PATH=$DATABASE_PATH STORAGE_PATH=$STORAGE_PATH BACKUP_DIR=$BACKUP_DIR node bin/vertex-backup.js restore latest --target /tmp/restore-check --yes"
