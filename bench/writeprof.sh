#!/usr/bin/env bash
# bench/writeprof.sh: CPU and blocking profiles of the imgfs daemon on a real mount, one
# mount per workload (docs/perf.md):
#   small : NSMALL files of 0-4 KiB in 50 directories (python3, as bench/fsbench.sh), imgfs sync
#   copy  : cp -r of NPHOTOS random files of 2-8 MB, sync, imgfs sync
# Writes OUT/{small,copy}.{cpu,block}.prof and prints the top of each (go tool pprof).
# Env: IMGFS (default bin/imgfs, built), OUT (default /var/tmp/writeprof), NSMALL=2000, NPHOTOS=40.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
IMGFS=${IMGFS:-$PWD/bin/imgfs}
OUT=${OUT:-/var/tmp/writeprof}
NSMALL=${NSMALL:-2000}
NPHOTOS=${NPHOTOS:-40}
[ -x "$IMGFS" ] || go build -o "$IMGFS" ./cmd/imgfs
mkdir -p "$OUT"
W=$(mktemp -d /var/tmp/writeprof.XXXX)
M=$W/mnt
trap 'fusermount3 -u "$M" 2>/dev/null || true; rm -rf "$W"' EXIT
echo "writeprof passphrase" >"$W/pass"
export IMGFS_PASSPHRASE_FILE=$W/pass
mkdir -p "$W/store" "$M" "$W/src"
IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "$W/store" >/dev/null
python3 - "$W/src" "$NPHOTOS" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(1)
for i in range(n):
    with open(os.path.join(d, f"IMG_{i:04d}.jpg"), "wb") as f:
        f.write(r.randbytes(r.randint(2 << 20, 8 << 20)))
PY
run() { # name command...
	local name=$1; shift
	"$IMGFS" mount --no-similar --store "$W/store" --cache "$W/cache-$name" \
		--cpuprofile "$OUT/$name.cpu.prof" --blockprofile "$OUT/$name.block.prof" "$M"
	local s e
	s=$(date +%s.%N)
	"$@"
	e=$(date +%s.%N)
	"$IMGFS" sync "$M"
	echo "writeprof: $name $(python3 -c "print(f'{$e-$s:.2f}')") s (to store: $(python3 -c "import time; print(f'{time.time()-$s:.2f}')") s)"
	"$IMGFS" umount "$M"
}
small() {
	python3 - "$M/small" "$NSMALL" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(2)
for k in range(50):
    os.makedirs(os.path.join(d, f"d{k:02d}"), exist_ok=True)
for i in range(n):
    with open(os.path.join(d, f"d{i % 50:02d}", f"f{i:05d}.txt"), "wb") as f:
        f.write(r.randbytes(r.randint(0, 4096)))
PY
}
copy() { cp -r "$W/src" "$M/photos"; sync; }
run small small
run copy copy
for p in small copy; do
	for k in cpu block; do
		echo "== $p $k"
		go tool pprof -top -cum "$IMGFS" "$OUT/$p.$k.prof" 2>/dev/null | sed -n 1,45p
	done
done
