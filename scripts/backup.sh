#!/usr/bin/env bash
# Wrapper around `vertex-backup create` for cron and manual runs (the seed's backup.sh): checks the
# prerequisites and free space, runs the backup and the rotation, logs to a file, prints the duration
# and the statistics, reports success or failure to Telegram, and exits with the CLI's exit code.
#
#   scripts/backup.sh [--type full|database|storage] [--max-backups N] [--backup-dir DIR]
#
# Environment:
#   TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID   send a message on success and on failure (both needed)
#   TELEGRAM_API_URL      Bot API base URL (default https://api.telegram.org)
#   (the three TELEGRAM_* are also read from ./.env, or VERTEX_BACKUP_ENV_FILE, when not in the environment)
#   --backup-dir and --max-backups are passed on only when given here; otherwise vertex-backup reads
#   BACKUP_DIR, MAX_BACKUPS, KEEP_*, --config and ./.env itself, exactly as when it is run directly.
#   BACKUP_LOG_FILE       log file (default <backup-dir>/backup-wrapper.log)
#   BACKUP_MIN_FREE_MB    refuse to start below this much free space (default 100)
#   VERTEX_BACKUP_BIN     the vertex-backup command to run (default: from PATH, else ../bin of this script)
#
# Exit codes: those of vertex-backup (0 ok, 1 failed, 2 usage, 3 damaged, 4 locked, 5 no space).

set -uo pipefail
umask 077

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
}

TYPE=full
MAX_BACKUPS=""
# only a --backup-dir given to the wrapper is passed on; BACKUP_DIR stays for vertex-backup to read
BACKUP_DIR_ENV="${BACKUP_DIR:-}"
BACKUP_DIR=""
MIN_FREE_MB="${BACKUP_MIN_FREE_MB:-100}"
# Telegram settings: the environment, else the ./.env that vertex-backup itself reads (one source of
# settings for both). The file is parsed by Node's own .env parser, as the tool does, never sourced.
read_env_file() {
  local file="$1" kv k
  [[ -r "$file" ]] && command -v node >/dev/null 2>&1 || return 0
  while IFS= read -r -d '' kv; do
    k="${kv%%=*}"
    [[ -n "${!k:-}" ]] || printf -v "$k" '%s' "${kv#*=}"
  done < <(node -e '
    const { parseEnv } = require("node:util");
    const env = parseEnv(require("node:fs").readFileSync(process.argv[1], "utf8").replace(/^\uFEFF/, ""));
    for (const k of ["TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_API_URL"]) if (env[k]) process.stdout.write(k + "=" + env[k] + "\0");
  ' "$file" 2>/dev/null)
}
read_env_file "${VERTEX_BACKUP_ENV_FILE:-./.env}"
TELEGRAM_API_URL="${TELEGRAM_API_URL:-https://api.telegram.org}"
HOST="${HOSTNAME:-$(uname -n)}"

die_usage() {
  printf 'backup.sh: %s\n' "$1" >&2
  printf "Try 'backup.sh --help'.\n" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --type) [[ $# -ge 2 ]] || die_usage "--type needs a value"; TYPE="$2"; shift 2 ;;
    --type=*) TYPE="${1#*=}"; shift ;;
    --max-backups) [[ $# -ge 2 ]] || die_usage "--max-backups needs a value"; MAX_BACKUPS="$2"; shift 2 ;;
    --max-backups=*) MAX_BACKUPS="${1#*=}"; shift ;;
    --backup-dir) [[ $# -ge 2 ]] || die_usage "--backup-dir needs a value"; BACKUP_DIR="$2"; shift 2 ;;
    --backup-dir=*) BACKUP_DIR="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown option: $1" ;;
  esac
done

case "$TYPE" in
  full|database|storage) ;;
  *) die_usage "--type must be full, database or storage, not '$TYPE'" ;;
esac
[[ -z "$MAX_BACKUPS" || "$MAX_BACKUPS" =~ ^[1-9][0-9]*$ ]] || die_usage "--max-backups must be a whole number of at least 1, not '$MAX_BACKUPS'"
[[ "$MIN_FREE_MB" =~ ^[0-9]+$ ]] || die_usage "BACKUP_MIN_FREE_MB must be a whole number, not '$MIN_FREE_MB'"

# The bot token is part of the Telegram URL: nothing this script prints or logs may contain it.
redact() {
  local s="$1"
  if [[ -n "${TELEGRAM_BOT_TOKEN:-}" ]]; then
    s="${s//"$TELEGRAM_BOT_TOKEN"/***}"
  fi
  printf '%s' "$s"
}

LOG_READY=0
log() {
  local level="$1" line
  shift
  line="$(date '+%Y-%m-%d %H:%M:%S') [$level] $(redact "$*")"
  if [[ "$level" == ERROR || "$level" == WARN ]]; then printf '%s\n' "$line" >&2; else printf '%s\n' "$line"; fi
  if [[ "$LOG_READY" == 1 ]]; then printf '%s\n' "$line" >>"$LOG_FILE" 2>/dev/null || true; fi
}

# Copies a command's output into the log, line by line, redacted.
log_output() {
  local level="$1" file="$2" l
  [[ -s "$file" ]] || return 0
  while IFS= read -r l || [[ -n "$l" ]]; do
    [[ -n "$l" ]] && log "$level" "  $l"
  done <"$file"
}

# The CLI's format (one decimal, rounded), so the wrapper and vertex-backup print the same figure.
human_size() {
  local b="$1" unit=1 name t _
  if ! [[ "$b" =~ ^[0-9]+$ ]]; then printf '?'; return; fi
  for _ in 1 2 3 4; do
    ((b >= unit * 1024)) || break
    unit=$((unit * 1024))
  done
  if ((unit == 1)); then printf '%d B' "$b"; return; fi
  t=$(((b * 10 + unit / 2) / unit))
  case "$unit" in 1024) name=KiB ;; 1048576) name=MiB ;; 1073741824) name=GiB ;; *) name=TiB ;; esac
  printf '%d.%d %s' $((t / 10)) $((t % 10)) "$name"
}

# An absolute path, so the log and the Telegram message say where things are (from cron, ./ is $HOME).
absolute() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$PWD" "${1#./}" ;;
  esac
}

human_duration() {
  local s="$1"
  if ((s >= 3600)); then printf '%dh %02dm %02ds' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
  elif ((s >= 60)); then printf '%dm %02ds' $((s / 60)) $((s % 60))
  else printf '%ds' "$s"; fi
}

send_telegram() {
  local text="$1" code curl_err body
  if [[ -z "${TELEGRAM_BOT_TOKEN:-}" || -z "${TELEGRAM_CHAT_ID:-}" ]]; then
    log INFO "Telegram not configured (TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID): no message sent"
    return 0
  fi
  if ! command -v curl >/dev/null 2>&1; then
    log WARN "curl not found: cannot send the Telegram message"
    return 0
  fi
  curl_err="$(mktemp)"
  body="$(mktemp)"
  # a real file, not /dev/null: curl truncates its output file before each retry
  # The URL (with the token) goes to curl on stdin, not on its command line, where `ps` would show it.
  code="$(printf 'url = "%s/bot%s/sendMessage"\n' "${TELEGRAM_API_URL%/}" "$TELEGRAM_BOT_TOKEN" |
    curl --silent --show-error --config - --output "$body" --write-out '%{http_code}' \
      --max-time 15 --retry 2 --retry-delay 1 \
      --data-urlencode "chat_id=$TELEGRAM_CHAT_ID" \
      --data-urlencode "text=$text" \
      --data-urlencode "disable_web_page_preview=true" 2>"$curl_err")"
  if [[ "$code" == 200 ]]; then
    log INFO "Telegram message sent"
  else
    log WARN "Telegram message not sent (HTTP ${code:-none}): $(tr '\n' ' ' <"$curl_err")$(head -c 300 "$body" | tr '\n' ' ')"
  fi
  rm -f "$curl_err" "$body"
  return 0
}

# --- the vertex-backup command -------------------------------------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CLI=()
if [[ -n "${VERTEX_BACKUP_BIN:-}" ]]; then
  CLI=("$VERTEX_BACKUP_BIN")
elif command -v vertex-backup >/dev/null 2>&1; then
  CLI=("$(command -v vertex-backup)")
elif [[ -f "$SCRIPT_DIR/../bin/vertex-backup.js" ]] && command -v node >/dev/null 2>&1; then
  CLI=(node "$SCRIPT_DIR/../bin/vertex-backup.js")
fi

# --- where the backups are: given here, or as vertex-backup resolves it (flags > env > .env > config)
DIR_ARGS=()
if [[ -n "$BACKUP_DIR" ]]; then
  BACKUP_DIR="$(absolute "$BACKUP_DIR")"
  DIR_ARGS=(--backup-dir "$BACKUP_DIR")
else
  if [[ ${#CLI[@]} -gt 0 ]] && command -v node >/dev/null 2>&1; then
    BACKUP_DIR="$("${CLI[@]}" stats --json 2>/dev/null | node -e '
      try { const j = JSON.parse(require("fs").readFileSync(0, "utf8")); if (typeof j.backup_dir === "string") console.log(j.backup_dir); } catch {}
    ' 2>/dev/null)"
  fi
  [[ -n "$BACKUP_DIR" ]] || BACKUP_DIR="$(absolute "${BACKUP_DIR_ENV:-./backups}")"
fi
ROTATE_ARGS=()
if [[ -n "$MAX_BACKUPS" ]]; then
  ROTATE_ARGS=(--max-backups "$MAX_BACKUPS")
  KEEP_TEXT="keep $MAX_BACKUPS per type"
else
  KEEP_TEXT="retention from the configuration"
fi
LOG_FILE="${BACKUP_LOG_FILE:-$BACKUP_DIR/backup-wrapper.log}"

START=$(date +%s)
STATUS=0
REASON=""
BACKUP_ID=""
BACKUP_SIZE=""
OUT="$(mktemp)"
ERR="$(mktemp)"
trap 'rm -f "$OUT" "$ERR"' EXIT

fail() {
  STATUS="$1"
  REASON="$2"
}

# --- prerequisites ------------------------------------------------------------------------------
if ! mkdir -p "$BACKUP_DIR" 2>"$ERR"; then
  fail 1 "cannot create the backup directory $BACKUP_DIR: $(tr '\n' ' ' <"$ERR")"
elif ! touch "$LOG_FILE" 2>/dev/null; then
  log WARN "cannot write the log file $LOG_FILE: logging to the terminal only"
else
  LOG_READY=1
fi
if [[ ${#CLI[@]} -eq 0 ]]; then
  fail 1 "vertex-backup not found (install it, put it on PATH or set VERTEX_BACKUP_BIN)"
elif [[ -n "${VERTEX_BACKUP_BIN:-}" && ! -x "$VERTEX_BACKUP_BIN" ]]; then
  fail 1 "VERTEX_BACKUP_BIN=$VERTEX_BACKUP_BIN is not an executable file"
fi

log INFO "=== vertex-backup $TYPE backup on $HOST: backup dir $BACKUP_DIR, $KEEP_TEXT ==="

FREE_KB=""
free_kb() {
  df -Pk "$BACKUP_DIR" 2>/dev/null | awk 'NR==2 {print $4}'
}
if [[ "$STATUS" == 0 ]]; then
  FREE_KB="$(free_kb)"
  if [[ "$FREE_KB" =~ ^[0-9]+$ ]]; then
    log INFO "free space at $BACKUP_DIR: $(human_size $((FREE_KB * 1024)))"
    if ((FREE_KB < MIN_FREE_MB * 1024)); then
      fail 5 "only $(human_size $((FREE_KB * 1024))) free at $BACKUP_DIR, need at least ${MIN_FREE_MB} MiB"
    fi
  else
    log WARN "cannot read the free space at $BACKUP_DIR"
  fi
fi

# --- the backup and the rotation ----------------------------------------------------------------
if [[ "$STATUS" == 0 ]]; then
  log INFO "running: $(basename "${CLI[-1]}") ${DIR_ARGS[*]} create --type $TYPE --json"
  "${CLI[@]}" "${DIR_ARGS[@]}" create --type "$TYPE" --json >"$OUT" 2>"$ERR"
  STATUS=$?
  if [[ "$STATUS" == 0 ]]; then log_output INFO "$ERR"; else log_output ERROR "$ERR"; fi
  # id, size and error from the one JSON document `create --json` prints
  if command -v node >/dev/null 2>&1 && [[ -s "$OUT" ]]; then
    PARSED="$(node -e '
      let j = {};
      try { j = JSON.parse(require("fs").readFileSync(0, "utf8")); } catch {}
      const e = j.error && typeof j.error === "object" ? j.error.message : (j.errors || [])[0];
      console.log([j.id ?? "", j.size_bytes ?? "", String(e ?? "").replace(/\s+/g, " ")].join("\t"));
    ' <"$OUT")"
    IFS=$'\t' read -r BACKUP_ID BACKUP_SIZE JSON_ERROR <<<"$PARSED"
  else
    BACKUP_ID="$(grep -o '"id": *"[^"]*"' "$OUT" | head -n1 | sed 's/.*"\([^"]*\)"$/\1/')"
    JSON_ERROR=""
  fi
  if [[ "$STATUS" != 0 ]]; then
    REASON="${JSON_ERROR:-}"
    if [[ -z "$REASON" ]]; then
      REASON="$(grep -v '^[[:space:]]*$' "$ERR" | grep -v '^hint:' | tail -n1 | sed 's/^error: //')"
    fi
    [[ -n "$REASON" ]] || REASON="vertex-backup exited with code $STATUS"
  else
    log INFO "backup ${BACKUP_ID:-?} created ($(human_size "$BACKUP_SIZE"))"
    log INFO "rotating: $KEEP_TEXT"
    "${CLI[@]}" "${DIR_ARGS[@]}" rotate "${ROTATE_ARGS[@]}" >"$OUT" 2>"$ERR"
    RC=$?
    log_output INFO "$OUT"
    if [[ "$RC" == 0 ]]; then log_output INFO "$ERR"; else log_output ERROR "$ERR"; fi
    if [[ "$RC" != 0 ]]; then
      fail "$RC" "the backup succeeded but the rotation failed: $(grep -v '^[[:space:]]*$' "$ERR" | tail -n1 | sed 's/^error: //')"
    fi
  fi
fi

END=$(date +%s)
DURATION="$(human_duration $((END - START)))"

# --- duration, statistics, report ----------------------------------------------------------------
if [[ ${#CLI[@]} -gt 0 && -d "$BACKUP_DIR" ]]; then
  if "${CLI[@]}" "${DIR_ARGS[@]}" stats >"$OUT" 2>&1; then
    log INFO "statistics:"
    log_output INFO "$OUT"
  fi
fi

if [[ "$STATUS" == 0 ]]; then
  log INFO "=== $TYPE backup succeeded in $DURATION ==="
  MESSAGE="✅ Vertex backup on $HOST: $TYPE backup succeeded
Backup: ${BACKUP_ID:-?} ($(human_size "$BACKUP_SIZE"))
Duration: $DURATION
Rotation: $KEEP_TEXT"
else
  log ERROR "=== $TYPE backup FAILED (exit $STATUS) after $DURATION: $REASON ==="
  MESSAGE="❌ Vertex backup on $HOST: $TYPE backup FAILED (exit $STATUS)
Reason: $REASON
Duration: $DURATION
Log: $LOG_FILE"
fi
FREE_KB="$(free_kb)"
if [[ "$FREE_KB" =~ ^[0-9]+$ ]]; then
  MESSAGE="$MESSAGE
Free at $BACKUP_DIR: $(human_size $((FREE_KB * 1024)))"
fi
send_telegram "$(redact "$MESSAGE")"

exit "$STATUS"
