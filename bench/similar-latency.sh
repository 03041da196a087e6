#!/bin/bash
# Time from close() of a new photo to its appearance in .similar/ (p50/p95 over N photos)
# on a fresh vault mounted from this checkout. Usage: bash bench/similar-latency.sh [N]
set -euo pipefail
N=${1:-200}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=simlat
. "$ROOT/bench/fresh-vault.sh"
(cd "$ROOT" && go build -o $T/similar-latency ./bench/similar-latency)
$T/similar-latency -mnt $T/mnt -n "$N" -imgfs $T/imgfs
