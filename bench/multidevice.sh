#!/usr/bin/env bash
# bench/multidevice.sh: several devices on one vault (docs/core.md, "Several devices").
#
# 1. The randomised multi-device test (fs/core TestRandomMultiDevice) for N iterations: 3
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
# Env: SEED (first seed of part 1), S3_ITER (iterations of part 1 again on versitygw behind
#      faulty.Proxy with 2% 503s, 1% resets, 1% lost answers; default 50, 0 skips), IDLE (idle period of part 2, default 60s), REFRESH
#      (--refresh of the mounts, default 5s), FILES (default 50), SKIP_S3=1 skips part 2.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${1:-200}
echo "== randomised multi-device test, $N iterations"
IMGFS_MULTIDEV_ITER=$N IMGFS_MULTIDEV_SEED=${SEED:-1} \
	go test ./fs/core/ -run '^TestRandomMultiDevice$' -count=1 -timeout 6h -v 2>/dev/null |
	grep -E '^(---|ok|FAIL|PASS)|iterations passed|lost|differ|converge|holds bytes' | grep -v -- '--- PASS: TestRandomMultiDevice/' || true
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
