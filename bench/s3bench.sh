#!/usr/bin/env bash
# bench/s3bench.sh: imgfs with the vault on S3 (versitygw on 127.0.0.1) vs on the local store,
# in one run, interleaved, plus the requests the write path makes per photo.
#
#   photo copy  : cp -r of NPHOTOS random 2-8 MB files + sync (spool speed), and until
#                 `imgfs sync` returns (sealed, uploaded, root written) -> MB/s
#   read-back   : umount, mount with an empty cache dir, drop caches, sha256sum -c -> MB/s
#                 (every byte comes from the store and is verified)
#   requests    : versitygw's access log (--access-log) counted by operation between the start
#                 of the copy and the end of `imgfs sync`, divided by NPHOTOS.
#                 Target (issue 4): one HEAD and at most one PUT per new photo + amortised metadata.
#
# Usage: bench/s3bench.sh   (ROUNDS=3 NPHOTOS=150)
# Env: IMGFS (binary, default bin/imgfs, built if missing), VERSITYGW (default: on PATH or
# ~/go/bin), WORK (default /var/tmp/s3bench.XXXX), KEEP=1. Needs root (drop_caches), fuse3.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
ROUNDS=${ROUNDS:-3}
NPHOTOS=${NPHOTOS:-150}
IMGFS=${IMGFS:-$REPO/bin/imgfs}
VERSITYGW=${VERSITYGW:-$(command -v versitygw || true)}
[ -x "$VERSITYGW" ] || { echo "s3bench: versitygw missing (bash scripts/install-versitygw.sh)" >&2; exit 1; }
[ -x "$IMGFS" ] || go build -o "$IMGFS" ./cmd/imgfs
[ -w /proc/sys/vm/drop_caches ] || { echo "s3bench: needs root to drop caches" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d /var/tmp/s3bench.XXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }

VGW_PID=
SRC=
cleanup() {
	for m in "$WORK/mnt-local" "$WORK/mnt-s3"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
	done
	[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null || true
	[ -n "$SRC" ] && rm -rf "$SRC"
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "s3bench: kept $WORK"; fi
}
trap cleanup EXIT

# --- versitygw on a free loopback port ---
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/vgw/bench"
export AWS_ACCESS_KEY_ID=s3bench AWS_SECRET_ACCESS_KEY=s3bench-secret-key
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
	"$VERSITYGW" --port "127.0.0.1:$PORT" --quiet --access-log "$WORK/access.log" posix "$WORK/vgw" \
	>"$WORK/vgw.log" 2>&1 &
VGW_PID=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
	sleep 0.1
done
S3URL="s3:http://127.0.0.1:$PORT/bench/vault"

# --- source photos on tmpfs ---
SRC=$(mktemp -d /dev/shm/s3bench-src.XXXX)
mkdir -p "$SRC/photos"
python3 - "$SRC/photos" "$NPHOTOS" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(3)
for i in range(n):
    with open(os.path.join(d, f"IMG_{i:04d}.jpg"), "wb") as f:
        f.write(r.randbytes(r.randint(2 << 20, 8 << 20)))
PY
(cd "$SRC/photos" && sha256sum -- * >"$SRC/sums")
PHOTO_BYTES=$(du -sb "$SRC/photos" | cut -f1)
echo "s3bench: $NPHOTOS photos, $((PHOTO_BYTES / 1000000)) MB; versitygw on 127.0.0.1:$PORT; work $WORK"

echo "s3bench passphrase" >"$WORK/passphrase"
export IMGFS_PASSPHRASE_FILE=$WORK/passphrase
declare -A STORE=([local]="$WORK/local-store" [s3]="$S3URL")
declare -A GEN=([local]=0 [s3]=0)
mount_t() {
	local t=$1
	GEN[$t]=$((GEN[$t] + 1))
	rm -rf "$WORK/cache-$t"-*
	mkdir -p "$WORK/cache-$t-${GEN[$t]}" "$WORK/mnt-$t"
	"$IMGFS" mount --store "${STORE[$t]}" --cache "$WORK/cache-$t-${GEN[$t]}" "$WORK/mnt-$t" 2>>"$WORK/imgfs-$t.log"
}
mkdir -p "$WORK/local-store"
for t in local s3; do
	IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "${STORE[$t]}" >/dev/null
	mount_t "$t"
done

CSV=$WORK/results.csv
echo "round,target,metric,value" >"$CSV"
record() { echo "$1,$2,$3,$4" >>"$CSV"; printf '  %-6s %-20s %s\n' "$2" "$3" "$4"; }
loglines() { wc -l <"$WORK/access.log"; }

for ((r = 1; r <= ROUNDS; r++)); do
	echo "round $r"
	order="local s3"; [ $((r % 2)) -eq 0 ] && order="s3 local"
	for t in $order; do
		# New photos for every copy (8 bytes changed in each), so that no copy is a dedup hit.
		python3 - "$SRC/photos" "$r-$t" <<'PY'
import os, sys
d, tag = sys.argv[1], sys.argv[2].encode()[:8].ljust(8, b".")
for n in os.listdir(d):
    with open(os.path.join(d, n), "r+b") as f:
        f.write(tag)
PY
		(cd "$SRC/photos" && sha256sum -- * >"$SRC/sums")
		dir=$WORK/mnt-$t/r$r
		drop_caches
		l0=$(loglines)
		s=$(now); cp -r "$SRC/photos" "$dir"; sync; e=$(now)
		record "$r" "$t" copy_s "$(elapsed "$s" "$e")"
		"$IMGFS" sync "$WORK/mnt-$t"; e=$(now)
		record "$r" "$t" copy_stored_s "$(elapsed "$s" "$e")"
		if [ "$t" = s3 ]; then
			sleep 1 # let versitygw write its access log
			tail -n +$((l0 + 1)) "$WORK/access.log" | head -n $(($(loglines) - l0)) >"$WORK/write-r$r.log"
			for op in HeadObject PutObject GetObject ListObjectsV2 DeleteObject CreateMultipartUpload UploadPart; do
				n=$(grep -c " s3_$op " "$WORK/write-r$r.log" || true)
				record "$r" "$t" "req_$op" "$n"
			done
			record "$r" "$t" req_total "$(wc -l <"$WORK/write-r$r.log")"
		fi
		"$IMGFS" umount "$WORK/mnt-$t"
		mount_t "$t"
		drop_caches
		l0=$(loglines)
		s=$(now); (cd "$dir" && sha256sum -c --quiet "$SRC/sums"); e=$(now)
		record "$r" "$t" read_fresh_s "$(elapsed "$s" "$e")"
		[ "$t" = s3 ] && record "$r" "$t" read_requests "$(($(loglines) - l0))"
		rm -rf "$dir"
	done
done

echo
echo "s3bench: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS rounds interleaved, $NPHOTOS photos ($((PHOTO_BYTES / 1000000)) MB), medians (min-max)"
python3 - "$CSV" "$PHOTO_BYTES" "$NPHOTOS" <<'PY'
import csv, statistics, sys
path, pbytes, nph = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(path)))
def vals(t, m):
    return [float(r["value"]) for r in rows if r["target"] == t and r["metric"] == m]
def fmt(v):
    if not v:
        return "-"
    v = sorted(v)
    return f"{statistics.median(v):.1f} ({v[0]:.1f}-{v[-1]:.1f})"
mb = pbytes / 1e6
print("| store | cp -r + sync MB/s | until imgfs sync MB/s | read-back, empty cache MB/s |")
print("|---|---|---|---|")
for t in ("local", "s3"):
    print(f"| {t} | {fmt([mb/x for x in vals(t,'copy_s')])} | {fmt([mb/x for x in vals(t,'copy_stored_s')])} | {fmt([mb/x for x in vals(t,'read_fresh_s')])} |")
print()
print("S3 requests on the write path (copy + imgfs sync), per photo (median over rounds):")
print("| HEAD | PUT | GET | LIST | DELETE | multipart | total |")
print("|---|---|---|---|---|---|---|")
def per(op):
    v = vals("s3", op)
    return f"{statistics.median(v)/nph:.2f}" if v else "-"
mp = [a + b for a, b in zip(vals("s3", "req_CreateMultipartUpload"), vals("s3", "req_UploadPart"))]
print(f"| {per('req_HeadObject')} | {per('req_PutObject')} | {per('req_GetObject')} | {per('req_ListObjectsV2')} | {per('req_DeleteObject')} | {statistics.median(mp)/nph if mp else 0:.2f} | {per('req_total')} |")
v = vals("s3", "read_requests")
if v:
    print(f"read-back with an empty cache: {statistics.median(v)/nph:.2f} requests per photo")
PY
echo "raw: $CSV"
