#!/usr/bin/env bash
# bench/multidevice.sh: several devices on one vault (docs/core.md, "Several devices").
#
# 1. The randomised multi-device test with real mounts (integration TestRandomDevicesMounted)
#    for N iterations on the local store and N on versitygw (a fault proxy per device for its
#    offline periods): 3 imgfs mount daemons with their own caches, random file operations
#    through the mountpoints, kill -9, read-only commands on crashed caches, gc; checked from a
#    fresh cache at the end (docs/testing.md). About 30-100 s per iteration (S3: 39-56 s mean)
#    on 2 loaded cores, so 200 iterations take hours: MOUNTED_ITER sets N for this part alone.
#    An iteration mostly waits (for a CPU on a loaded machine, for refresh intervals, for
#    daemons to start and stop: about 12 s of CPU in 30-60 s), so MOUNTED_SHARDS=K runs K
#    shards at once: independent test processes (own TMPDIR, temporary folders, ports,
#    versitygw and mounts), one per seed, shard j taking seeds SEED+j, SEED+j+K, ...; each
#    prints one line per seed as it ends. MOUNTED_UNTIL=HH:MM (UTC) starts iterations until
#    that time instead of counting them. A failing seed's output and its daemons' and
#    versitygw's logs are kept in MOUNTED_LOGS (default /tmp/imgfs-multidevice-logs-DATE).
#    Prints the operation counts over the passed iterations and the mean wall time by phase.
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
# Env: MOUNTED_ITER, MOUNTED_STEPS (default 45), MOUNTED_STORE (local or s3; default both, one
#      after the other), MOUNTED_SHARDS (default 1), MOUNTED_UNTIL, MOUNTED_LOGS,
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
# mounted_seed STORE SEED: one iteration in its own test process; one line to $MD_WORK/results.
mounted_seed() {
	local store=$1 seed=$2 log="$MD_WORK/$1-seed-$2.log" t0 rc=0 secs why
	t0=$(date +%s)
	(cd integration && IMGFS_BIN=$MD_WORK/imgfs IMGFS_MULTIMOUNT_ITER=1 IMGFS_MULTIMOUNT_SEED=$seed \
		IMGFS_MULTIMOUNT_STORE=$store IMGFS_MULTIMOUNT_STEPS=${MOUNTED_STEPS:-45} IMGFS_MULTIMOUNT_KEEP=$MOUNTED_LOGS \
		"$MD_WORK/integration.test" -test.run '^TestRandomDevicesMounted$' -test.count=1 -test.timeout 30m -test.v) >"$log" 2>&1 || rc=$?
	secs=$(($(date +%s) - t0))
	if [ $rc = 0 ] && grep -q 'iterations passed 1 of 1' "$log"; then
		printf '%s %s PASS %s\n' "$store" "$seed" "$secs" >>"$MD_WORK/results"
		grep -h 'iterations passed 1 of 1' "$log" | sed 's/.*iterations passed 1 of 1: //' >>"$MD_WORK/counts-$store"
		grep -h 'wall time by phase' "$log" | sed 's/.*wall time by phase: //' >>"$MD_WORK/phases-$store"
		printf '[%(%H:%M:%S)T] %s seed %s: passed in %s s\n' -1 "$store" "$seed" "$secs"
		rm -f "$log"
	else
		mkdir -p "$MOUNTED_LOGS"
		cp "$log" "$MOUNTED_LOGS/"
		printf '%s %s FAIL %s\n' "$store" "$seed" "$secs" >>"$MD_WORK/results"
		why=$(grep -m1 -E 'multidev_random_test.go:[0-9]+: .*(lost|no version|fresh cache shows|not within|changed the crashed|imgfs |device [a-c]:)|panic:|timed out' "$log" | cut -c1-300 || true)
		printf '[%(%H:%M:%S)T] %s seed %s: FAILED in %s s (exit %s): %s; output and logs in %s\n' -1 \
			"$store" "$seed" "$secs" "$rc" "${why:-see the output}" "$MOUNTED_LOGS"
	fi
}

# mounted_shard STORE J: seeds SEED+J, SEED+J+K, ... in turn, in its own TMPDIR.
mounted_shard() {
	local store=$1 j=$2 seed i=0
	export TMPDIR=$MD_WORK/s$j
	mkdir -p "$TMPDIR"
	seed=$((${SEED:-1} + j))
	while :; do
		if [ -n "${MOUNTED_UNTIL:-}" ]; then
			[ "$(date +%s)" -lt "$MD_UNTIL" ] || break
		else
			[ $((i * MD_SHARDS + j)) -lt "$MOUNTED_ITER" ] || break
		fi
		mounted_seed "$store" "$seed"
		seed=$((seed + MD_SHARDS))
		i=$((i + 1))
	done
}

# mounted_stop: on INT/TERM, stop the shards, then every process and mount under $MD_WORK
# (the test processes die without their cleanups).
mounted_stop() {
	trap - INT TERM
	local p
	for p in "${MD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	# Twice: a test process may have started a command while the first pass ran.
	for _ in 1 2; do
		for p in /proc/[0-9]*; do
			if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF "$MD_WORK/"; then kill -9 "${p#/proc/}" 2>/dev/null || true; fi
		done
		sleep 1
	done
	grep -F " $MD_WORK/" /proc/self/mountinfo | awk '{print $5}' | while read -r m; do fusermount3 -u -z "$m" 2>/dev/null || true; done
	rm -rf "$MD_WORK"
	exit 130
}

# mounted_sum STORE: the totals of the passed iterations' counts and mean phase times.
mounted_sum() {
	local store=$1
	awk -v store="$store" '$1 == store { n++; if ($3 == "PASS") p++; else { f++; fs = fs " " $2 } ; t += $4 }
		END { printf "%s: %d iterations, %d passed, %d failed%s, mean %.0f s each\n", store, n, p, f, (f ? " (seeds" fs ")" : ""), (n ? t / n : 0) }' \
		"$MD_WORK/results"
	[ -s "$MD_WORK/counts-$store" ] || return 0
	awk '{ s = $0; while (match(s, /[^=]+=[0-9]+/)) { kv = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)
			sub(/^ +/, "", kv); k = substr(kv, 1, index(kv, "=") - 1); v = substr(kv, index(kv, "=") + 1); c[k] += v } }
		END { for (k in c) printf "%s=%d\n", k, c[k] }' "$MD_WORK/counts-$store" | sort | paste -sd' ' | sed 's/^/  counts over the passed iterations: /'
	awk '{ n++; s = $0; while (match(s, /[^=]+=[0-9.]+s/)) { kv = substr(s, RSTART, RLENGTH - 1); s = substr(s, RSTART + RLENGTH)
			sub(/^ +/, "", kv); k = substr(kv, 1, index(kv, "=") - 1); c[k] += substr(kv, index(kv, "=") + 1) } }
		END { for (k in c) printf "%s=%.1f\n", k, c[k] / n }' "$MD_WORK/phases-$store" | sort | paste -sd' ' | sed 's/^/  mean wall time by phase (s): /'
}

if [ "$MOUNTED_ITER" != 0 ]; then
	MD_SHARDS=${MOUNTED_SHARDS:-1}
	MOUNTED_LOGS=$(realpath -m "${MOUNTED_LOGS:-/tmp/imgfs-multidevice-logs-$(date -u +%Y%m%dT%H%M)}")
	if [ -n "${MOUNTED_UNTIL:-}" ]; then
		MD_UNTIL=$(date -u -d "$MOUNTED_UNTIL" +%s)
	fi
	# A short folder: the mounts' control sockets live under TMPDIR (108-byte limit).
	MD_WORK=$(mktemp -d /tmp/imgfs-md.XXXXXX)
	MD_PIDS=()
	trap mounted_stop INT TERM
	go build -o "$MD_WORK/imgfs" ./cmd/imgfs
	go test -c -o "$MD_WORK/integration.test" ./integration
	touch "$MD_WORK/results"
	for store in ${MOUNTED_STORE:-local s3}; do
		echo "== randomised multi-device test with real mounts, $store store, $([ -n "${MOUNTED_UNTIL:-}" ] && echo "until $MOUNTED_UNTIL UTC" || echo "$MOUNTED_ITER iterations"), $MD_SHARDS shard(s), seeds from ${SEED:-1}"
		MD_PIDS=()
		for j in $(seq 0 $((MD_SHARDS - 1))); do
			mounted_shard "$store" "$j" &
			MD_PIDS+=($!)
		done
		wait "${MD_PIDS[@]}"
		mounted_sum "$store"
	done
	trap - INT TERM
	rm -rf "$MD_WORK"
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
