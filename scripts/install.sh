#!/usr/bin/env bash
# Installs vertex-backup from this checkout (after `npm ci && npm run build`) the one documented way:
#   the package under /opt/vertex-backup, the command linked as /usr/local/bin/vertex-backup, the
#   systemd units in /etc/systemd/system with ExecStart= naming that link, the man pages and bash
#   completion, the vertex-backup system user and its directories.
# Then `vertex-backup init …` writes /etc/vertex-backup/env, the remotes file and the unit overrides
# for the paths of this server (docs/scheduling.md).
#
#   sudo scripts/install.sh                    # the real thing
#   scripts/install.sh --root /tmp/scratch     # into a scratch root (no user created, nothing enabled)
#
# Options:
#   --root DIR        install under DIR instead of / (paths inside the units stay the real ones)
#   --prefix DIR      the package directory (default /opt/vertex-backup)
#   --bindir DIR      where the command is linked (default /usr/local/bin)
#   --no-user         do not create the vertex-backup user (default under --root)
#   --link-modules    symlink node_modules to this checkout's instead of installing the production
#                     dependencies with `npm ci --omit=dev` (for tests and development only)
#   --enable          systemctl daemon-reload and enable the backup, drill and sync timers (not under --root)
set -euo pipefail

ROOT=""
PREFIX=/opt/vertex-backup
BINDIR=/usr/local/bin
MAKE_USER=auto
LINK_MODULES=0
ENABLE=0
SERVICE_USER=vertex-backup

die() { echo "install.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
    --bindir) BINDIR="${2:?--bindir needs a directory}"; shift 2 ;;
    --no-user) MAKE_USER=0; shift ;;
    --link-modules) LINK_MODULES=1; shift ;;
    --enable) ENABLE=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
case "$PREFIX" in /*) ;; *) die "--prefix must be absolute: $PREFIX" ;; esac
case "$BINDIR" in /*) ;; *) die "--bindir must be absolute: $BINDIR" ;; esac
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT="$(cd "$ROOT" && pwd)"
  [ "$MAKE_USER" = auto ] && MAKE_USER=0
  [ "$ENABLE" = 1 ] && die "--enable makes no sense under --root"
fi
[ "$MAKE_USER" = auto ] && MAKE_USER=1

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$SRC/dist/cli/main.js" ] || die "$SRC/dist is missing: run 'npm ci && npm run build' in $SRC first"
command -v node >/dev/null || die "node is not on PATH"
NODE="$(command -v node)"
case "$(dirname "$NODE")" in
  /usr/bin|/usr/local/bin|/bin) ;;
  *) echo "install.sh: warning: node is $NODE; the units find it through PATH (/usr/local/bin:/usr/bin): link it there" >&2 ;;
esac

DEST="$ROOT$PREFIX"
echo "package    $DEST"
# a fresh copy each time: an upgrade leaves no file of the previous version behind
rm -rf "$DEST.new"
mkdir -p "$DEST.new"
for item in package.json package-lock.json bin dist systemd cron scripts man docs README.md; do
  [ -e "$SRC/$item" ] && cp -R "$SRC/$item" "$DEST.new/"
done
if [ "$LINK_MODULES" = 1 ]; then
  ln -s "$(readlink -f "$SRC/node_modules")" "$DEST.new/node_modules"
else
  (cd "$DEST.new" && npm ci --omit=dev --ignore-scripts=false --no-audit --no-fund >/dev/null)
fi
rm -rf "$DEST.old"
[ -e "$DEST" ] && mv "$DEST" "$DEST.old"
mv "$DEST.new" "$DEST"
rm -rf "$DEST.old"
chmod 0755 "$DEST/bin/vertex-backup.js"

echo "command    $ROOT$BINDIR/vertex-backup -> $PREFIX/bin/vertex-backup.js"
mkdir -p "$ROOT$BINDIR"
ln -sfn "$PREFIX/bin/vertex-backup.js" "$ROOT$BINDIR/vertex-backup"

UNITDIR="$ROOT/etc/systemd/system"
echo "units      $UNITDIR"
mkdir -p "$UNITDIR"
for unit in "$SRC"/systemd/*.service "$SRC"/systemd/*.timer; do
  # the shipped units name /usr/local/bin/vertex-backup; the link made above is the truth
  sed "s#/usr/local/bin/vertex-backup#$BINDIR/vertex-backup#g" "$unit" >"$UNITDIR/$(basename "$unit")"
  chmod 0644 "$UNITDIR/$(basename "$unit")"
done

MANDIR="$ROOT/usr/local/share/man/man1"
mkdir -p "$MANDIR"
cp "$SRC"/man/*.1 "$MANDIR/"
COMPDIR="$ROOT/usr/share/bash-completion/completions"
mkdir -p "$COMPDIR"
"$NODE" "$DEST/bin/vertex-backup.js" completion bash >"$COMPDIR/vertex-backup"

# the service user's directories: state (remotes file, working directory), backups, settings
install -d -m 0700 "$ROOT/var/lib/vertex-backup" "$ROOT/var/backups/vertex-backup"
install -d -m 0750 "$ROOT/etc/vertex-backup"
if [ "$MAKE_USER" = 1 ]; then
  if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
    echo "user       $SERVICE_USER (system user, no login)"
    useradd --system --home-dir /var/lib/vertex-backup --shell /usr/sbin/nologin "$SERVICE_USER"
  fi
  chown "$SERVICE_USER:$SERVICE_USER" "$ROOT/var/lib/vertex-backup" "$ROOT/var/backups/vertex-backup"
  chgrp "$SERVICE_USER" "$ROOT/etc/vertex-backup"
fi

if [ "$ENABLE" = 1 ]; then
  systemctl daemon-reload
  systemctl enable vertex-backup.timer vertex-backup-drill.timer vertex-backup-sync.timer
fi

cat <<EOF

Installed. Next, as root:
  vertex-backup init --db-path /srv/app/app.db --storage-path /srv/app/media \\
      --backup-dir /var/backups/vertex-backup --remotes-out /var/lib/vertex-backup/remote_storage.json \\
      --remote nas=file:///mnt/nas/vertex-backup --recipient age1… --healthcheck-url https://hc-ping.com/<uuid> \\
      --systemd-dir /etc/systemd/system
  chown $SERVICE_USER: /var/lib/vertex-backup/remote_storage.json
  systemctl daemon-reload && systemctl enable --now vertex-backup.timer vertex-backup-drill.timer vertex-backup-sync.timer

Where things live under systemd:
  /etc/vertex-backup/env                          settings and secrets (EnvironmentFile=, read by systemd as root)
  /var/lib/vertex-backup/remote_storage.json      the remotes (REMOTES_CONFIG in the env file; owned by $SERVICE_USER, 0600)
  /var/backups/vertex-backup                      the backups (ReadWritePaths=)
A file:///mnt/… NAS is read-only to the units (ProtectSystem=strict) until a drop-in allows it; init
--systemd-dir writes one, or by hand: systemctl edit vertex-backup.service (and vertex-backup-sync.service)
  [Service]
  ReadWritePaths=/mnt/nas/vertex-backup
EOF
