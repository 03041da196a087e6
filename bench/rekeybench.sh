#!/usr/bin/env bash
# bench/rekeybench.sh: what imgfs rekey costs (docs/cli.md "rekey").
#
# Builds a vault from the near-duplicate originals (224 real JPEGs, imported twice: 448
# files, 29 MB of distinct content) plus N random 4 MB files, then times, one after the
# other: imgfs rekey (metadata only), imgfs rekey --content, and imgfs gc --grace 0. Prints
# each command's output (it states the rekey's own time and counts) and its wall/CPU time.
#
# Usage: bench/rekeybench.sh [N]      (default 50: about 230 MB of content in all)
# Env: STORE (default a local store in WORK; an s3:... URL with AWS_ACCESS_KEY_ID and
#      AWS_SECRET_ACCESS_KEY measures the transfer), PHOTOS (default
#      /work/shared/neardup/originals), WORK (default a temporary directory), KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${1:-50}
WORK=${WORK:-$(mktemp -d /var/tmp/rekeybench.XXXX)}
PHOTOS=${PHOTOS:-/work/shared/neardup/originals}
STORE=${STORE:-$WORK/store}
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$WORK/rnd"
go build -o "$WORK/bin/imgfs" ./cmd/imgfs
export HOME=$WORK/home XDG_CACHE_HOME=$WORK/cache XDG_DATA_HOME=$WORK/data
export IMGFS_KDF_MEMORY_KIB=${IMGFS_KDF_MEMORY_KIB:-65536}
printf 'rekey bench passphrase\n' >"$WORK/pass"
export IMGFS_PASSPHRASE_FILE=$WORK/pass
imgfs() { "$WORK/bin/imgfs" "$@"; }
for i in $(seq 1 "$N"); do head -c 4000000 /dev/urandom >"$WORK/rnd/f$i.bin"; done
imgfs init --store "$STORE" >/dev/null
imgfs import --store "$STORE" "$PHOTOS" /photos >/dev/null
imgfs import --store "$STORE" "$PHOTOS" /photos-copy >/dev/null
imgfs import --store "$STORE" "$WORK/rnd" /random >/dev/null
echo "load: $(cut -d' ' -f1-3 /proc/loadavg), cores: $(nproc)"
for cmd in "rekey" "rekey --content" "gc --grace 0"; do
	echo "== imgfs $cmd"
	# shellcheck disable=SC2086
	/usr/bin/time -f "wall %e s, user %U s, sys %S s" "$WORK/bin/imgfs" $cmd --store "$STORE" 2>&1 | grep -v 'level=WARN'
done
