#!/usr/bin/env bash
# bench/fsbench.sh: the gocryptfs-comparison workloads on an imgfs mount, a plain directory and
# a gocryptfs mount, in the same run, interleaved (the order rotates every round).
#
#   photo copy : cp -r of NPHOTOS random files of 2-8 MB (incompressible, like JPEGs) + sync
#                -> MB/s and files/s. For imgfs also `imgfs sync` afterwards (sealed, stored,
#                root written: the fsync-level durability point) -> "to store" MB/s.
#   read-back  : drop the kernel caches, sha256sum -c of every photo -> MB/s (also checks bytes).
#                For imgfs also after a remount with an empty cache dir (reads from the store).
#   small files: NSMALL files of 0-4 KiB in 50 directories created by one python3 process
#                -> files/s.
#   ls -lR     : drop the kernel caches, ls -lR of the whole tree -> seconds.
#   rm -rf     : of the whole tree -> seconds.
#
# Usage: bench/fsbench.sh            (ROUNDS=3 NPHOTOS=150 NSMALL=5000 TARGETS="plain gocryptfs imgfs")
# Env: IMGFS (binary, default bin/imgfs, built if missing), IMGFS_BASE (a second binary, e.g.
# of an older commit, run as target "imgfs-base" in the same interleaved rounds: add it to
# TARGETS), WORK (scratch dir on the disk under
# test, default /var/tmp/fsbench.XXXX), KEEP=1 keeps WORK. Needs root (drop_caches), fuse3,
# gocryptfs, python3. Prints a table of medians and writes WORK/results.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/local/go/bin:$PATH
ROUNDS=${ROUNDS:-3}
NPHOTOS=${NPHOTOS:-150}
NSMALL=${NSMALL:-5000}
TARGETS=${TARGETS:-"plain gocryptfs imgfs"}
IMGFS=${IMGFS:-$REPO/bin/imgfs}
WORK=${WORK:-$(mktemp -d /var/tmp/fsbench.XXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in fusermount3 python3 sha256sum; do
	command -v $tool >/dev/null || { echo "fsbench: $tool missing (make setup)" >&2; exit 1; }
done
if [[ " $TARGETS " == *" gocryptfs "* ]] && ! command -v gocryptfs >/dev/null; then
	echo "fsbench: gocryptfs missing (apt-get install gocryptfs)" >&2; exit 1
fi
if [[ " $TARGETS " == *" imgfs "* ]] && [ ! -x "$IMGFS" ]; then
	go build -o "$IMGFS" ./cmd/imgfs
fi
if [[ " $TARGETS " == *" imgfs-base "* ]] && [ ! -x "${IMGFS_BASE:-}" ]; then
	echo "fsbench: target imgfs-base needs IMGFS_BASE (an imgfs binary)" >&2; exit 1
fi
imgfs_bin() { if [ "$1" = imgfs-base ]; then echo "$IMGFS_BASE"; else echo "$IMGFS"; fi; }
[ -w /proc/sys/vm/drop_caches ] || { echo "fsbench: needs root to drop caches" >&2; exit 1; }

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }

MOUNTS=()
PIDS=()
cleanup() {
	for m in "${MOUNTS[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "fsbench: kept $WORK"; fi
}
trap cleanup EXIT

# --- source photos (on tmpfs when it has room, so the source never limits the copy) ---
SRC=$WORK/src
if [ "$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt $((NPHOTOS * 9 * 1024 + 200000)) ] 2>/dev/null; then
	SRC=$(mktemp -d /dev/shm/fsbench-src.XXXX)
	trap 'cleanup; rm -rf "$SRC"' EXIT
fi
mkdir -p "$SRC/photos"
python3 - "$SRC/photos" "$NPHOTOS" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(1)
for i in range(n):
    size = r.randint(2 << 20, 8 << 20)
    with open(os.path.join(d, f"IMG_{i:04d}.jpg"), "wb") as f:
        f.write(r.randbytes(size))
PY
(cd "$SRC/photos" && sha256sum -- * >"$SRC/sums")
PHOTO_BYTES=$(du -sb "$SRC/photos" | cut -f1)
echo "fsbench: $NPHOTOS photos, $((PHOTO_BYTES / 1000000)) MB, source $SRC; work $WORK"

# --- targets ---
PASS=$WORK/passphrase
echo "fsbench passphrase" >"$PASS"
export IMGFS_PASSPHRASE_FILE=$PASS
IMGFS_CACHE_GEN=0
imgfs_mount() { # target
	IMGFS_CACHE_GEN=$((IMGFS_CACHE_GEN + 1))
	rm -rf "$WORK/$1-cache"*
	mkdir -p "$WORK/$1-cache$IMGFS_CACHE_GEN"
	"$(imgfs_bin "$1")" mount --store "$WORK/$1-store" --cache "$WORK/$1-cache$IMGFS_CACHE_GEN" "$WORK/mnt-$1" \
		2>>"$WORK/$1.log"
}
setup_target() {
	case $1 in
	plain) mkdir -p "$WORK/plain" ;;
	gocryptfs)
		mkdir -p "$WORK/gocryptfs-cipher" "$WORK/mnt-gocryptfs"
		gocryptfs -q -init -extpass "cat $PASS" "$WORK/gocryptfs-cipher"
		gocryptfs -q -nosyslog -extpass "cat $PASS" "$WORK/gocryptfs-cipher" "$WORK/mnt-gocryptfs"
		MOUNTS+=("$WORK/mnt-gocryptfs")
		;;
	imgfs | imgfs-base)
		mkdir -p "$WORK/$1-store" "$WORK/mnt-$1"
		IMGFS_KDF_MEMORY_KIB=65536 "$(imgfs_bin "$1")" init --store "$WORK/$1-store" >/dev/null
		imgfs_mount "$1"
		MOUNTS+=("$WORK/mnt-$1")
		;;
	esac
}
target_dir() {
	case $1 in
	plain) echo "$WORK/plain" ;;
	*) echo "$WORK/mnt-$1" ;;
	esac
}
for t in $TARGETS; do setup_target "$t"; done

CSV=$WORK/results.csv
echo "round,target,metric,value" >"$CSV"
record() { echo "$1,$2,$3,$4" >>"$CSV"; printf '  %-10s %-22s %s\n' "$2" "$3" "$4"; }

run_workloads() { # round target
	local r=$1 t=$2 dir s e
	dir=$(target_dir "$t")/r$r
	mkdir -p "$dir"
	drop_caches
	s=$(now); cp -r "$SRC/photos" "$dir/photos"; sync; e=$(now)
	record "$r" "$t" copy_s "$(elapsed "$s" "$e")"
	if [[ $t == imgfs* ]]; then
		"$(imgfs_bin "$t")" sync "$WORK/mnt-$t"; e=$(now)
		record "$r" "$t" copy_stored_s "$(elapsed "$s" "$e")"
	fi
	drop_caches
	s=$(now); (cd "$dir/photos" && sha256sum -c --quiet "$SRC/sums"); e=$(now)
	record "$r" "$t" read_s "$(elapsed "$s" "$e")"
	if [[ $t == imgfs* ]]; then
		"$(imgfs_bin "$t")" umount "$WORK/mnt-$t"
		imgfs_mount "$t"
		drop_caches
		s=$(now); (cd "$dir/photos" && sha256sum -c --quiet "$SRC/sums"); e=$(now)
		record "$r" "$t" read_fresh_cache_s "$(elapsed "$s" "$e")"
	fi
	s=$(now)
	python3 - "$dir/small" "$NSMALL" <<'PY'
import os, random, sys
d, n = sys.argv[1], int(sys.argv[2])
r = random.Random(2)
for k in range(50):
    os.makedirs(os.path.join(d, f"d{k:02d}"), exist_ok=True)
for i in range(n):
    with open(os.path.join(d, f"d{i % 50:02d}", f"f{i:05d}.txt"), "wb") as f:
        f.write(r.randbytes(r.randint(0, 4096)))
PY
	e=$(now)
	record "$r" "$t" small_s "$(elapsed "$s" "$e")"
	drop_caches
	s=$(now); ls -lR "$dir" >/dev/null; e=$(now)
	record "$r" "$t" lslR_s "$(elapsed "$s" "$e")"
	s=$(now); rm -rf "$dir"; e=$(now)
	record "$r" "$t" rmrf_s "$(elapsed "$s" "$e")"
}

read -r -a TARR <<<"$TARGETS"
for ((r = 1; r <= ROUNDS; r++)); do
	echo "round $r"
	n=${#TARR[@]}
	for ((i = 0; i < n; i++)); do
		run_workloads "$r" "${TARR[$(((i + r - 1) % n))]}"
	done
done

echo
echo "fsbench: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS rounds interleaved, medians (min-max)"
python3 - "$CSV" "$PHOTO_BYTES" "$NPHOTOS" "$NSMALL" "$TARGETS" <<'PY'
import csv, statistics, sys
path, pbytes, nph, nsmall, targets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split()
rows = list(csv.DictReader(open(path)))
def vals(t, m):
    return [float(r["value"]) for r in rows if r["target"] == t and r["metric"] == m]
def fmt(v, f):
    if not v:
        return "-"
    xs = sorted(f(x) for x in v)
    return f"{statistics.median(xs):.0f} ({xs[0]:.0f}-{xs[-1]:.0f})" if statistics.median(xs) >= 100 else f"{statistics.median(xs):.2f} ({xs[0]:.2f}-{xs[-1]:.2f})"
mb = pbytes / 1e6
cols = [
    ("photo copy MB/s", "copy_s", lambda s: mb / s),
    ("photo copy files/s", "copy_s", lambda s: nph / s),
    ("copy to store MB/s", "copy_stored_s", lambda s: mb / s),
    ("read-back MB/s", "read_s", lambda s: mb / s),
    ("read fresh cache MB/s", "read_fresh_cache_s", lambda s: mb / s),
    (f"{nsmall} small files/s", "small_s", lambda s: nsmall / s),
    ("ls -lR s", "lslR_s", lambda s: s),
    ("rm -rf s", "rmrf_s", lambda s: s),
]
print("| target | " + " | ".join(c[0] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for t in targets:
    print(f"| {t} | " + " | ".join(fmt(vals(t, m), f) for _, m, f in cols) + " |")
PY
echo "raw: $CSV"
