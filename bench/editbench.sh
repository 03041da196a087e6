#!/usr/bin/env bash
# bench/editbench.sh: the edit workloads of format v2 (docs/format.md §11) on an imgfs mount, a
# plain directory and a gocryptfs mount, in the same run, interleaved (the order rotates every
# round). Each round and target:
#
#   edit   : a 500 MB file (EDIT_MB) exists; 4 KiB pwrite at a random offset + fsync, 10 times
#            -> median ms. For imgfs also the content objects uploaded per edit.
#   append : a 1 GB file (APPEND_MB) exists; append 1 MB + fsync, 5 times -> median ms (imgfs:
#            objects uploaded per append).
#   sqlite : a 50 MB SQLite database (one table, rows of 1 KB); 30 one-row UPDATE transactions
#            (journal_mode=DELETE, synchronous=FULL: every commit fsyncs) -> seconds.
#
# The big files are written and synced before the timed part. imgfs runs on a local-directory
# store; uploads are counted as new files under the store's c/.
#
# Usage: bench/editbench.sh   (ROUNDS=3 EDIT_MB=500 APPEND_MB=1000 TARGETS="plain gocryptfs imgfs")
# Env: IMGFS (binary, default bin/imgfs, built if missing), WORK (scratch dir, default
# /var/tmp/editbench.XXXX), KEEP=1 keeps WORK. Needs fuse3, python3 (sqlite3 module), and
# gocryptfs for that target (apt-get install gocryptfs).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/local/go/bin:$PATH
ROUNDS=${ROUNDS:-3}
EDIT_MB=${EDIT_MB:-500}
APPEND_MB=${APPEND_MB:-1000}
TARGETS=${TARGETS:-"plain gocryptfs imgfs"}
IMGFS=${IMGFS:-$REPO/bin/imgfs}
WORK=${WORK:-$(mktemp -d /var/tmp/editbench.XXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in fusermount3 python3; do
	command -v $tool >/dev/null || { echo "editbench: $tool missing (make setup)" >&2; exit 1; }
done
if [[ " $TARGETS " == *" gocryptfs "* ]] && ! command -v gocryptfs >/dev/null; then
	echo "editbench: gocryptfs missing (apt-get install gocryptfs)" >&2; exit 1
fi
if [[ " $TARGETS " == *" imgfs "* ]] && [ ! -x "$IMGFS" ]; then
	go build -o "$IMGFS" ./cmd/imgfs
fi

MOUNTS=()
cleanup() {
	for m in "${MOUNTS[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
	done
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "editbench: kept $WORK"; fi
}
trap cleanup EXIT

PASS=$WORK/passphrase
echo "editbench passphrase" >"$PASS"
export IMGFS_PASSPHRASE_FILE=$PASS
setup_target() {
	case $1 in
	plain) mkdir -p "$WORK/plain" ;;
	gocryptfs)
		mkdir -p "$WORK/gocryptfs-cipher" "$WORK/mnt-gocryptfs"
		gocryptfs -q -init -extpass "cat $PASS" "$WORK/gocryptfs-cipher"
		gocryptfs -q -nosyslog -extpass "cat $PASS" "$WORK/gocryptfs-cipher" "$WORK/mnt-gocryptfs"
		MOUNTS+=("$WORK/mnt-gocryptfs")
		;;
	imgfs)
		mkdir -p "$WORK/imgfs-store" "$WORK/mnt-imgfs" "$WORK/imgfs-cache"
		IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "$WORK/imgfs-store" >/dev/null
		"$IMGFS" mount --store "$WORK/imgfs-store" --cache "$WORK/imgfs-cache" "$WORK/mnt-imgfs" 2>>"$WORK/imgfs.log"
		MOUNTS+=("$WORK/mnt-imgfs")
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

# One python process per workload: it prints "metric value" lines. OBJS is a command that
# prints the number of stored content objects (imgfs only).
run_workloads() { # round target
	local r=$1 t=$2 dir objs=""
	dir=$(target_dir "$t")/r$r
	mkdir -p "$dir"
	[ "$t" = imgfs ] && objs="find $WORK/imgfs-store/c -type f | wc -l"
	ROUND=$r OBJS=$objs python3 - "$dir" "$EDIT_MB" "$APPEND_MB" <<'PY' | while read -r m v; do echo "$r,$t,$m,$v" >>"$CSV"; printf '  %-10s %-22s %s\n' "$t" "$m" "$v"; done
import os, random, sqlite3, statistics, subprocess, sys, time
d, edit_mb, append_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
objs_cmd = os.environ.get("OBJS", "")
def objs():
    return int(subprocess.check_output(objs_cmd, shell=True)) if objs_cmd else 0
def make(path, mb):
    r = random.Random(mb * 1000 + int(os.environ["ROUND"]))
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(r.randbytes(1 << 20))
        f.flush()
        os.fsync(f.fileno())
r = random.Random(3 + int(os.environ["ROUND"]))
# edit
p = os.path.join(d, "edit.bin")
make(p, edit_mb)
fd = os.open(p, os.O_RDWR)
ms, up = [], []
for _ in range(10):
    o0 = objs()
    off = r.randrange(0, (edit_mb << 20) - 4096)
    s = time.perf_counter()
    os.pwrite(fd, r.randbytes(4096), off)
    os.fsync(fd)
    ms.append((time.perf_counter() - s) * 1000)
    up.append(objs() - o0)
os.close(fd)
print("edit_ms", f"{statistics.median(ms):.1f}")
if objs_cmd:
    print("edit_uploads", max(up))
os.unlink(p)
# append
p = os.path.join(d, "append.bin")
make(p, append_mb)
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
ms, up = [], []
for _ in range(5):
    o0 = objs()
    s = time.perf_counter()
    os.write(fd, r.randbytes(1 << 20))
    os.fsync(fd)
    ms.append((time.perf_counter() - s) * 1000)
    up.append(objs() - o0)
os.close(fd)
print("append_ms", f"{statistics.median(ms):.1f}")
if objs_cmd:
    print("append_uploads", max(up))
os.unlink(p)
# sqlite
p = os.path.join(d, "cat.db")
db = sqlite3.connect(p, isolation_level=None)
db.execute("PRAGMA journal_mode=DELETE")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
db.execute("BEGIN")
for i in range(50_000):
    db.execute("INSERT INTO t VALUES (?, ?)", (i, r.randbytes(1000)))
db.execute("COMMIT")
s = time.perf_counter()
for i in range(30):
    db.execute("BEGIN")
    db.execute("UPDATE t SET v = ? WHERE id = ?", (r.randbytes(1000), r.randrange(50_000)))
    db.execute("COMMIT")
print("sqlite_s", f"{time.perf_counter() - s:.3f}")
db.close()
os.unlink(p)
PY
	rm -rf "$dir"
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
echo "editbench: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $ROUNDS rounds interleaved, medians (min-max)"
python3 - "$CSV" "$TARGETS" <<'PY'
import csv, statistics, sys
path, targets = sys.argv[1], sys.argv[2].split()
rows = list(csv.DictReader(open(path)))
def vals(t, m):
    return sorted(float(r["value"]) for r in rows if r["target"] == t and r["metric"] == m)
cols = [("4 KiB edit+fsync, 500 MB file, ms", "edit_ms"), ("uploads per edit (max)", "edit_uploads"),
        ("1 MB append+fsync, 1 GB file, ms", "append_ms"), ("uploads per append (max)", "append_uploads"),
        ("30 SQLite UPDATE tx, s", "sqlite_s")]
print("| target | " + " | ".join(c[0] for c in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for t in targets:
    cells = []
    for _, m in cols:
        v = vals(t, m)
        cells.append("-" if not v else (f"{max(v):.0f}" if m.endswith("uploads") else f"{statistics.median(v):.3g} ({v[0]:.3g}-{v[-1]:.3g})"))
    print(f"| {t} | " + " | ".join(cells) + " |")
PY
echo "raw: $CSV"
