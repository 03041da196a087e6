#!/usr/bin/env bash
# bench/scale.sh: the cost of one vault as it grows (docs/scale.md). One vault is
# grown through the sizes in SIZES by bench/scalegen (which writes through fs/core directly:
# small files of 0-4 KiB from a pool of 256 contents, 1000 per directory), and at each size
# a real mount is measured:
#   mount      : `imgfs mount` from a fresh, empty cache dir (loads the tree from the store)
#                after dropping the kernel caches -> seconds, the daemon's CPU time when
#                ready (the wall time suffers most from a loaded machine), its RSS (VmRSS)
#                after the mount and its peak (VmHWM) after ls -lR.
#   create+sync: `echo > new file; imgfs sync` on the mount, REPS times -> median, min, max ms.
#   ls -lR     : drop the kernel caches, ls -lR of the mount -> seconds.
# At COMPARE files (default 40000; must be one of SIZES) the same tree is written into a
# gocryptfs mount and both are listed ROUNDS times, interleaved, after dropping the caches.
#
# The mounts run with --no-similar (the namespace is measured, not the near-duplicate
# indexer's first scan); SIMILAR=1 mounts with the indexer and the model in models/.
#
# Usage: bench/scale.sh       (SIZES="10000 40000 100000 1000000" REPS=5 ROUNDS=3)
# Env: WORK (scratch dir, default /var/tmp/scale.XXXX, removed at the end unless KEEP=1).
# Needs root (drop_caches), fuse3, gocryptfs. A million files take about 20 minutes to build
# on a 2-core machine and about 1 GB of disk (store + caches).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
SIZES=${SIZES:-"10000 40000 100000 1000000"}
COMPARE=${COMPARE:-40000}
REPS=${REPS:-5}
ROUNDS=${ROUNDS:-3}
[ -w /proc/sys/vm/drop_caches ] || { echo "scale: needs root to drop caches" >&2; exit 1; }
command -v gocryptfs >/dev/null || { echo "scale: gocryptfs missing (apt-get install gocryptfs)" >&2; exit 1; }
WORK=${WORK:-$(mktemp -d /var/tmp/scale.XXXX)}
mkdir -p "$WORK/bin" "$WORK/mnt" "$WORK/mnt-gocryptfs" "$WORK/run"
chmod 700 "$WORK/run"
go build -o "$WORK/bin/imgfs" ./cmd/imgfs
go build -o "$WORK/bin/scalegen" ./bench/scalegen
IMGFS=$WORK/bin/imgfs
SIMILAR_FLAG=--no-similar
if [ "${SIMILAR:-0}" = 1 ]; then
	SIMILAR_FLAG=
	export IMGFS_MODEL=${IMGFS_MODEL:-$REPO/models/mobilenet_v2.imgfsmodel}
fi
export HOME=$WORK XDG_RUNTIME_DIR=$WORK/run XDG_CACHE_HOME=$WORK/xdg-cache
head -c 24 /dev/urandom | base64 >"$WORK/pass"
export IMGFS_PASSPHRASE_FILE=$WORK/pass
cleanup() {
	for m in "$WORK/mnt" "$WORK/mnt-gocryptfs"; do
		if mountpoint -q "$m"; then "$IMGFS" umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" || true; fi
	done
	if [ "${KEEP:-0}" = 1 ]; then echo "scale: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
ms() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f", (e - s) * 1000 }'; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
kib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
daemon_pid() { "$IMGFS" status --json "$WORK/mnt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "$WORK/store" >/dev/null
lslR_imgfs=() lslR_gocryptfs=() compare_line=
compare_ls() { # interleaved ls -lR of the imgfs mount (already mounted) and gocryptfs
	local n=$1 r t s e
	mkdir -p "$WORK/gocryptfs-cipher"
	gocryptfs -q -init -extpass "cat $WORK/pass" "$WORK/gocryptfs-cipher"
	gocryptfs -q -nosyslog -extpass "cat $WORK/pass" "$WORK/gocryptfs-cipher" "$WORK/mnt-gocryptfs"
	"$WORK/bin/scalegen" -plain "$WORK/mnt-gocryptfs" -files "$n" 2>/dev/null
	for r in $(seq 1 "$ROUNDS"); do
		local order="imgfs gocryptfs"
		[ $((r % 2)) = 0 ] && order="gocryptfs imgfs"
		for t in $order; do
			local m=$WORK/mnt
			[ "$t" = gocryptfs ] && m=$WORK/mnt-gocryptfs
			drop_caches
			s=$(now); ls -lR "$m" >/dev/null; e=$(now)
			eval "lslR_$t+=($(secs "$s" "$e"))"
		done
	done
	fusermount3 -u "$WORK/mnt-gocryptfs"
	rm -rf "$WORK/gocryptfs-cipher"
	local mi mg
	mi=$(echo "${lslR_imgfs[*]}" | median) mg=$(echo "${lslR_gocryptfs[*]}" | median)
	compare_line="ls -lR of $n files after drop_caches, $ROUNDS rounds interleaved: imgfs ${lslR_imgfs[*]} (median $mi s), gocryptfs ${lslR_gocryptfs[*]} (median $mg s), imgfs/gocryptfs $(awk -v a="$mi" -v b="$mg" 'BEGIN { printf "%.2f", a / b }')"
	echo "scale: $compare_line" >&2
}

# Rows are printed as each size completes (a long run can be cut short).
echo "bench/scale.sh on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), REPS=$REPS, mount ${SIMILAR_FLAG:-with the indexer}"
echo "| files | build s (scalegen) | mount s (fresh cache) | daemon CPU s at ready | daemon RSS after mount | daemon RSS peak (after ls -lR) | create+sync median ms | create+sync ms (all) | ls -lR s | store |"
echo "|---|---|---|---|---|---|---|---|---|---|"
prev=0
for n in $SIZES; do
	s=$(now)
	"$WORK/bin/scalegen" -store "$WORK/store" -cache "$WORK/build-cache" -from "$prev" -files "$n" 2>>"$WORK/scalegen.log"
	e=$(now)
	build=$(secs "$s" "$e")
	prev=$n
	# Mount from a fresh cache.
	rm -rf "$WORK/cache"
	drop_caches
	s=$(now)
	"$IMGFS" mount $SIMILAR_FLAG --store "$WORK/store" --cache "$WORK/cache" "$WORK/mnt" 2>>"$WORK/mount.log"
	e=$(now)
	mount_s=$(secs "$s" "$e")
	pid=$(daemon_pid)
	rss_mount=$(proc_kib "$pid" VmRSS)
	cpu_mount=$(awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$pid/stat")
	# One-file create + sync.
	mkdir -p "$WORK/mnt/new-$n"
	"$IMGFS" sync "$WORK/mnt" >/dev/null
	cs=()
	for i in $(seq 1 "$REPS"); do
		s=$(now)
		echo "file $i" >"$WORK/mnt/new-$n/f$i"
		"$IMGFS" sync "$WORK/mnt" >/dev/null
		e=$(now)
		cs+=("$(ms "$s" "$e")")
	done
	cs_med=$(echo "${cs[*]}" | median)
	cs_all=$(echo "${cs[*]}" | tr ' ' '\n' | sort -g | tr '\n' ' ')
	# ls -lR after dropping the caches.
	drop_caches
	s=$(now); ls -lR "$WORK/mnt" >/dev/null; e=$(now)
	ls_s=$(secs "$s" "$e")
	rss_peak=$(proc_kib "$pid" VmHWM)
	if [ "$n" = "$COMPARE" ]; then compare_ls "$n"; fi
	"$IMGFS" umount "$WORK/mnt"
	store_du=$(du -sm "$WORK/store" | cut -f1)
	echo "| $n | $build | $mount_s | $cpu_mount | $(kib "$rss_mount") | $(kib "$rss_peak") | $cs_med | $cs_all| $ls_s | $store_du MB |"
	echo "scale: $n files done" >&2
done
rm -rf "$WORK/cache"

echo "end load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "$compare_line" ]; then echo; echo "$compare_line"; fi
