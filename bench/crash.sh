#!/usr/bin/env bash
# bench/crash.sh: the T39 crash-consistency loop (docs/testing.md, "Crash consistency") for N iterations.
#
# Each iteration runs writers (cp, dd bs=4k, write+fsync, temp+rename, O_TRUNC rewrite, append)
# in a fresh directory of an imgfs mount, kills the daemon with SIGKILL at a random moment,
# runs `fusermount3 -u -z`, remounts (every second iteration with the cache dir wiped, i.e.
# machine loss; 15 % of the remounted daemons are killed again while they replay), and checks
# against the writers' fsynced journal: every close-acknowledged file intact (cache kept),
# every fsync-acknowledged file intact (cache wiped), anything else absent or a whole
# attempted version, never a mix; the mount succeeds every time. At the end it unmounts
# cleanly and checks every iteration again from an empty cache. Prints a summary.
#
# Usage: bench/crash.sh [N]          (default 200)
# Env: STORE (store URL, default a local store in WORK; e.g. s3:http://127.0.0.1:7070/bucket
#      with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), WORK (default /var/tmp/crash.XXXX),
#      SEED, KEEP=1 keeps WORK, CRASH_ARGS (extra crashdriver loop flags).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${1:-200}
WORK=${WORK:-$(mktemp -d /var/tmp/crash.XXXX)}
mkdir -p "$WORK/bin"
go build -o "$WORK/bin/imgfs" ./cmd/imgfs
go build -o "$WORK/bin/crashdriver" ./integration/crashdriver
args=(-imgfs "$WORK/bin/imgfs" -work "$WORK" -n "$N")
[ -n "${STORE:-}" ] && args+=(-store "$STORE")
[ -n "${SEED:-}" ] && args+=(-seed "$SEED")
rc=0
# shellcheck disable=SC2086
"$WORK/bin/crashdriver" loop "${args[@]}" ${CRASH_ARGS:-} | tee "$WORK/crash.log" || rc=$?
if [ "${KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
	echo "crash.sh: logs kept in $WORK (crash.log, logs/mount-*.log, journals/)"
else
	rm -rf "$WORK"
fi
exit $rc
