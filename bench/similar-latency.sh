#!/bin/bash
# Time from close() of a new photo to its appearance in .similar/ (p50/p95 over N photos)
# on a fresh vault mounted from this checkout. Usage: bash bench/similar-latency.sh [N]
set -euo pipefail
N=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
T=$(mktemp -d /tmp/imgfs-simlat.XXXXXX)
(cd "$ROOT" && go build -o $T/imgfs ./cmd/imgfs && go build -o $T/similar-latency ./bench/similar-latency)
export HOME=$T/home XDG_RUNTIME_DIR=$T/run XDG_CACHE_HOME=$T/cache XDG_DATA_HOME=$T/data
export IMGFS_MODEL=${IMGFS_MODEL:-$ROOT/models/mobilenet_v2.imgfsmodel}
mkdir -p $HOME $XDG_RUNTIME_DIR $XDG_CACHE_HOME $XDG_DATA_HOME $T/mnt && chmod 700 $XDG_RUNTIME_DIR
head -c 24 /dev/urandom | base64 > $T/pass
export IMGFS_PASSPHRASE_FILE=$T/pass
cleanup() { $T/imgfs umount $T/mnt >/dev/null 2>&1 || fusermount3 -u -z $T/mnt 2>/dev/null || true; rm -rf $T; }
trap cleanup EXIT
$T/imgfs init --store $T/store >/dev/null
$T/imgfs mount --store $T/store $T/mnt
$T/similar-latency -mnt $T/mnt -n "$N" -imgfs $T/imgfs
