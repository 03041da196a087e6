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
# The big files are written and synced before the timed part. Targets:
#   plain, gocryptfs : a directory, a gocryptfs mount
#   imgfs            : imgfs on a local-directory store
#   imgfs-s3         : imgfs on S3 (versitygw on 127.0.0.1 with --access-log, as bench/s3bench.sh);
#                      per workload also the store requests (by operation) and the bytes uploaded
#                      and downloaded during the timed part, per edit / append / transaction
#   imgfs-old        : imgfs on a local store with the binary IMGFS_OLD (a before/after run)
# Uploads are counted as new files under the store's c/ (versitygw's posix directory for S3).
#
# Usage: bench/editbench.sh   (ROUNDS=3 EDIT_MB=500 APPEND_MB=1000 TARGETS="plain gocryptfs imgfs imgfs-s3")
# Env: IMGFS (binary, default bin/imgfs, built if missing), IMGFS_OLD, VERSITYGW (default: on
# PATH or ~/go/bin), WORK (scratch dir, default /var/tmp/editbench.XXXX), KEEP=1 keeps WORK.
# Needs fuse3, python3 (sqlite3 module), gocryptfs and versitygw for those targets
# (make setup).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
ROUNDS=${ROUNDS:-3}
EDIT_MB=${EDIT_MB:-500}
APPEND_MB=${APPEND_MB:-1000}
TARGETS=${TARGETS:-"plain gocryptfs imgfs imgfs-s3"}
IMGFS=${IMGFS:-$REPO/bin/imgfs}
IMGFS_OLD=${IMGFS_OLD:-}
WORK=${WORK:-$(mktemp -d /var/tmp/editbench.XXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in fusermount3 python3; do
	command -v $tool >/dev/null || { echo "editbench: $tool missing (make setup)" >&2; exit 1; }
done
if [[ " $TARGETS " == *" gocryptfs "* ]] && ! command -v gocryptfs >/dev/null; then
	echo "editbench: gocryptfs missing (apt-get install gocryptfs)" >&2; exit 1
fi
if [[ " $TARGETS " == *" imgfs"* ]] && [ ! -x "$IMGFS" ]; then
	go build -o "$IMGFS" ./cmd/imgfs
fi
if [[ " $TARGETS " == *" imgfs-old "* ]] && [ ! -x "$IMGFS_OLD" ]; then
	echo "editbench: target imgfs-old needs IMGFS_OLD=<binary>" >&2; exit 1
fi
VERSITYGW=${VERSITYGW:-$(command -v versitygw || true)}
if [[ " $TARGETS " == *" imgfs-s3 "* ]] && [ ! -x "$VERSITYGW" ]; then
	echo "editbench: versitygw missing (bash scripts/install-versitygw.sh)" >&2; exit 1
fi

MOUNTS=()
VGW_PID=
cleanup() {
	for m in "${MOUNTS[@]}"; do
		fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m" 2>/dev/null || true
	done
	[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null || true
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
	imgfs | imgfs-old)
		local bin=$IMGFS
		[ "$1" = imgfs-old ] && bin=$IMGFS_OLD
		mkdir -p "$WORK/$1-store" "$WORK/mnt-$1" "$WORK/$1-cache"
		IMGFS_KDF_MEMORY_KIB=65536 "$bin" init --store "$WORK/$1-store" >/dev/null
		"$bin" mount --store "$WORK/$1-store" --cache "$WORK/$1-cache" "$WORK/mnt-$1" 2>>"$WORK/$1.log"
		MOUNTS+=("$WORK/mnt-$1")
		;;
	imgfs-s3)
		# versitygw on a free loopback port, its access log counting requests (bench/s3bench.sh)
		local port
		port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
		mkdir -p "$WORK/vgw/bench" "$WORK/mnt-$1" "$WORK/$1-cache"
		export AWS_ACCESS_KEY_ID=editbench AWS_SECRET_ACCESS_KEY=editbench-secret-key
		ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
			"$VERSITYGW" --port "127.0.0.1:$port" --quiet --access-log "$WORK/access.log" posix "$WORK/vgw" \
			>"$WORK/vgw.log" 2>&1 &
		VGW_PID=$!
		for _ in $(seq 100); do
			curl -s -o /dev/null "http://127.0.0.1:$port/" && break
			sleep 0.1
		done
		IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "s3:http://127.0.0.1:$port/bench/vault" >/dev/null
		"$IMGFS" mount --store "s3:http://127.0.0.1:$port/bench/vault" --cache "$WORK/$1-cache" "$WORK/mnt-$1" 2>>"$WORK/$1.log"
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

# One python process per workload: it prints "metric value" lines. OBJS is a command that
# prints the number of stored content objects (imgfs only).
run_workloads() { # round target
	local r=$1 t=$2 dir objs="" alog=""
	dir=$(target_dir "$t")/r$r
	mkdir -p "$dir"
	case $t in
	imgfs | imgfs-old) objs="find $WORK/$t-store/c -type f | wc -l" ;;
	imgfs-s3)
		objs="find $WORK/vgw/bench/vault/c -type f | wc -l"
		alog=$WORK/access.log
		;;
	esac
	ROUND=$r OBJS=$objs ACCESS_LOG=$alog python3 - "$dir" "$EDIT_MB" "$APPEND_MB" <<'PY' | while read -r m v; do echo "$r,$t,$m,$v" >>"$CSV"; printf '  %-10s %-22s %s\n' "$t" "$m" "$v"; done
import collections, os, random, sqlite3, statistics, subprocess, sys, time
d, edit_mb, append_mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
objs_cmd = os.environ.get("OBJS", "")
alog = os.environ.get("ACCESS_LOG", "")
def objs():
    return int(subprocess.check_output(objs_cmd, shell=True)) if objs_cmd else 0
def log_mark():
    return os.path.getsize(alog) if alog else 0
def log_report(name, start, n):
    # versitygw's access log (S3 server access log fields): op at 7, bytes sent at 12,
    # object size at 13. It is written behind the requests: wait until it stops growing.
    if not alog:
        return
    last = -1
    while os.path.getsize(alog) != last:
        last = os.path.getsize(alog)
        time.sleep(1.5)
    ops, up, down = collections.Counter(), 0, 0
    with open(alog, "rb") as f:
        f.seek(start)
        for line in f.read(last - start).decode().splitlines():
            x = line.split()
            if len(x) < 14 or not x[7].startswith("s3_"):
                continue
            ops[x[7][3:]] += 1
            if x[7] in ("s3_PutObject", "s3_UploadPart"):
                up += int(x[13]) if x[13].isdigit() else 0
            if x[7] == "s3_GetObject":
                down += int(x[12]) if x[12].isdigit() else 0
    print(f"{name}_req", f"{sum(ops.values()) / n:.1f}")
    for op in ("PutObject", "GetObject", "HeadObject", "ListObjectsV2", "DeleteObject"):
        print(f"{name}_{op}", f"{ops[op] / n:.1f}")
    print(f"{name}_up_kb", f"{up / n / 1024:.0f}")
    print(f"{name}_down_kb", f"{down / n / 1024:.0f}")
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
m0 = log_mark()
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
log_report("edit", m0, 10)
os.unlink(p)
# append
p = os.path.join(d, "append.bin")
make(p, append_mb)
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
ms, up = [], []
m0 = log_mark()
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
log_report("append", m0, 5)
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
m0 = log_mark()
s = time.perf_counter()
for i in range(30):
    db.execute("BEGIN")
    db.execute("UPDATE t SET v = ? WHERE id = ?", (r.randbytes(1000), r.randrange(50_000)))
    db.execute("COMMIT")
print("sqlite_s", f"{time.perf_counter() - s:.3f}")
log_report("sqlite", m0, 30)
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
s3 = [t for t in targets if vals(t, "edit_req")]
if s3:
    print()
    print("store requests and bytes during the timed part, per edit / append / transaction (medians over rounds):")
    ops = ["PutObject", "GetObject", "HeadObject", "ListObjectsV2", "DeleteObject"]
    print("| target | workload | requests | " + " | ".join(ops) + " | KiB up | KiB down |")
    print("|---" * (len(ops) + 5) + "|")
    for t in s3:
        for w in ("edit", "append", "sqlite"):
            cells = [f"{statistics.median(vals(t, f'{w}_{m}')):g}" for m in ["req"] + ops + ["up_kb", "down_kb"]]
            print(f"| {t} | {w} | " + " | ".join(cells) + " |")
PY
echo "raw: $CSV"
