#!/usr/bin/env bash
# bench/multidevice.sh: several devices on one vault (docs/core.md, "Several devices").
#
# 1. The randomised multi-device test with real mounts (integration TestRandomDevicesMounted)
#    for N iterations on the local store and N on versitygw (a fault proxy per device for its
#    offline periods): 3 imgfs mount daemons with their own caches, random file operations
#    through the mountpoints, kill -9, read-only commands on crashed caches, gc; checked from a
#    fresh cache at the end (docs/testing.md). About 30 s (local) and 70 s (S3) per iteration
#    on 2 loaded cores, so 200 iterations take hours: MOUNTED_ITER sets N for this part alone.
#    Prints the operation counts over all iterations.
# 1b. The in-process randomised multi-device test (fs/core TestRandomMultiDevice) for N
#    iterations (CORE_ITER, default N): 3
#    devices (caches) on one store, random creates, overwrites, appends, renames, deletes,
#    mkdir/rmdir of trees, syncs, refreshes, kill -9, clean closes, offline periods, read-only
#    opens of crashed caches and gc; at the end every device syncs and the test checks that no
#    acknowledged version is lost, every file is a whole version, and all devices and a fresh
#    cache agree. Prints the operation counts over all iterations.
# 2. On versitygw behind the recording proxy, with two real mounts: the requests per hour an
#    idle mount costs (the refresh poll) and the time from `imgfs sync` on one device to the
#    file being readable on the other, p50/p95 over 50 files (integration
#    TestMultiDeviceS3Bench).
#
# Usage: bench/multidevice.sh [N]      (default 200)
# Env: MOUNTED_ITER, MOUNTED_STEPS (default 45), MOUNTED_STORE (local or s3; default both),
#      CORE_ITER (0 skips a part), SEED (first seed
#      of part 1), S3_ITER (iterations of part 1 again on versitygw behind
#      faulty.Proxy with 2% 503s, 1% resets, 1% lost answers; default 50, 0 skips), IDLE (idle period of part 2, default 60s), REFRESH
#      (--refresh of the mounts, default 5s), FILES (default 50), SKIP_S3=1 skips part 2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${1:-200}
MOUNTED_ITER=${MOUNTED_ITER:-$N}
CORE_ITER=${CORE_ITER:-$N}
if [ "$MOUNTED_ITER" != 0 ]; then
	echo "== randomised multi-device test with real mounts, $MOUNTED_ITER iterations per store"
	IMGFS_MULTIMOUNT_ITER=$MOUNTED_ITER IMGFS_MULTIMOUNT_SEED=${SEED:-1} IMGFS_MULTIMOUNT_STEPS=${MOUNTED_STEPS:-45} \
		IMGFS_MULTIMOUNT_STORE=${MOUNTED_STORE:-} \
		go test ./integration/ -run '^TestRandomDevicesMounted$' -count=1 -timeout 24h -v 2>/dev/null |
		grep -E '^(--- FAIL|ok|FAIL|PASS)|^ +--- FAIL|iterations passed|is lost|fresh cache shows|no version|changed the crashed' || true
fi
if [ "$CORE_ITER" != 0 ]; then
	echo "== randomised multi-device test in one process (fs/core), $CORE_ITER iterations"
	IMGFS_MULTIDEV_ITER=$CORE_ITER IMGFS_MULTIDEV_SEED=${SEED:-1} \
		go test ./fs/core/ -run '^TestRandomMultiDevice$' -count=1 -timeout 6h -v 2>/dev/null |
		grep -E '^(---|ok|FAIL|PASS)|iterations passed|lost|differ|converge|holds bytes' | grep -v -- '--- PASS: TestRandomMultiDevice/' || true
fi
if [ "${SKIP_S3:-}" != 1 ] && [ "${S3_ITER:-50}" != 0 ]; then
	echo "== randomised multi-device test on versitygw with faults, ${S3_ITER:-50} iterations"
	IMGFS_MULTIDEV_S3=1 IMGFS_MULTIDEV_ITER=${S3_ITER:-50} IMGFS_MULTIDEV_SEED=${SEED:-1} \
		go test ./fs/core/ -run '^TestRandomMultiDevice$' -count=1 -timeout 6h -v 2>/dev/null |
		grep -E '^(---|ok|FAIL|PASS)|iterations passed|lost|differ|converge|holds bytes' | grep -v -- '--- PASS: TestRandomMultiDevice/' || true
fi
if [ "${SKIP_S3:-}" != 1 ]; then
	echo "== idle requests and sync-to-visible latency (versitygw, 2 mounts)"
	IMGFS_BENCH_MULTIDEV=1 IMGFS_BENCH_IDLE=${IDLE:-60s} IMGFS_BENCH_REFRESH=${REFRESH:-5s} IMGFS_BENCH_FILES=${FILES:-50} \
		go test ./integration/ -run '^TestMultiDeviceS3Bench$' -count=1 -timeout 30m -v 2>/dev/null |
		grep -E 'requests/hour|p50|^(ok|FAIL|---)' || true
fi
