#!/usr/bin/env bash
# Container downtime of a volume backup (issue 24): a volume of SIZE_MB (default 1024) in 1 MiB files of
# random data, one container labelled vertex-backup.stop=true writing to it; a first backup (level 0), then
# RUNS (default 3) nightly runs each after changing 1% of the files. Prints each run's downtime and the
# median, and the bytes each run added against the bytes changed. Needs root, dockerd (docker.io),
# busybox-static. Usage: sudo bash bench/docker-downtime.sh
set -euo pipefail
SIZE_MB=${SIZE_MB:-1024}
RUNS=${RUNS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
D=$(mktemp -d /tmp/vbb-XXXX)
H="unix://$D/s"
DOCKER=/usr/bin/docker; [ -x "$DOCKER" ] || DOCKER=docker
dk() { DOCKER_HOST=$H "$DOCKER" "$@"; }
dockerd -H "$H" --data-root "$D/d" --exec-root "$D/x" --pidfile "$D/pid" --storage-driver vfs --iptables=false --bridge=none >"$D/log" 2>&1 &
cleanup() { dk rm -f db >/dev/null 2>&1 || true; kill "$(cat "$D/pid")" 2>/dev/null || true; sleep 2; rm -rf "$D"; }
trap cleanup EXIT
for _ in $(seq 100); do dk version >/dev/null 2>&1 && break; sleep 0.1; done
mkdir -p "$D/r/bin" && cp /bin/busybox "$D/r/bin/" && for c in sh sleep date; do ln -s busybox "$D/r/bin/$c"; done
tar -C "$D/r" -cf "$D/img.tar" . && dk import "$D/img.tar" tiny:latest >/dev/null
dk volume create data >/dev/null
MP=$(dk volume inspect -f '{{.Mountpoint}}' data)
for i in $(seq 1 "$SIZE_MB"); do head -c 1048576 /dev/urandom >"$MP/f$i"; done
dk run -d --name db --network none --label vertex-backup.stop=true -v data:/data tiny:latest \
  /bin/sh -c 'trap "exit 0" TERM; while true; do date > /data/now; sleep 0.2 & wait $!; done' >/dev/null
vb() { DOCKER_HOST=$H VOLUMES=data node "$REPO/bin/vertex-backup.js" create --type volumes --compression none --backup-dir "$D/b" --json; }
vb >/dev/null
CHANGED=$((SIZE_MB / 100))
downs=()
for run in $(seq 1 "$RUNS"); do
  for i in $(seq 1 "$CHANGED"); do head -c 1048576 /dev/urandom >"$MP/f$(( (run * 37 + i * 7) % SIZE_MB + 1 ))"; done
  out=$(vb)
  ms=$(node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));const v=r.volumes[0];console.log(v.containers[0].downtime_ms, v.passes.reduce((a,p)=>a+p.size,0))' <<<"$out")
  set -- $ms
  echo "run $run: downtime ${1} ms, added $(( $2 / 1048576 )) MiB for ${CHANGED} MiB changed"
  downs+=("$1")
done
printf '%s\n' "${downs[@]}" | sort -n | awk '{a[NR]=$1} END {print "median downtime: " a[int((NR+1)/2)] " ms"}'
