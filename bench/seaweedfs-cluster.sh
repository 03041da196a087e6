#!/usr/bin/env bash
# A SeaweedFS cluster on this host's loopback (docs/stores.md): 1 master (telemetry off), 2
# volume servers on one rack with replication 001 (every volume has a copy on the other
# server), 1 filer, 1 S3 gateway. Not part of CI. SeaweedFS 4.16 did not make concurrent
# create-only PUTs atomic (seaweedfs/seaweedfs#8800); the snapshot built here (4.53) does
# (docs/stores.md). imgfs probe refuses a store that fails for writers, so the imgfs part of
# the demo runs the probe first and mounts only when it passes.
#
#   bench/seaweedfs-cluster.sh demo  [WORKDIR]  start, write objects through backend/s3, run the
#                                               conformance suite, kill -9 one volume server,
#                                               read every object back and check its hash, and
#                                               (if bin/imgfs can) the same with an imgfs mount,
#                                               then the randomised multi-device test with real
#                                               mounts on the cluster; then stop (default
#                                               command; stopped by a trap also on failure)
#   bench/seaweedfs-cluster.sh start [WORKDIR]  start and print the store URL and credentials
#   bench/seaweedfs-cluster.sh stop  [WORKDIR]  stop what start started
#
# WORKDIR defaults to /tmp/imgfs-seaweedfs. weed is taken from $WEED, PATH or
# $(go env GOPATH)/bin, and built from the Go module proxy if missing (see weed_install).
# Environment: OBJECTS (default 40) objects of 0.1-4 MB for the store-level demo; IMGFS_BIN
# (default bin/imgfs) for the mount demo; ITER (default 1; 0 skips), DEVICES (default 2) and
# STEPS (default 45) for TestRandomDevicesMounted on the cluster (IMGFS_MULTIMOUNT_URL).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
# The mount demo sets XDG_CACHE_HOME for imgfs; go's build cache must stay where it is.
GOCACHE=${GOCACHE:-$(go env GOCACHE)}
export GOCACHE
cd "$(dirname "$0")/.."
REPO=$PWD
CMD=${1:-demo}
W=${2:-/tmp/imgfs-seaweedfs}
# The newest snapshot the Go module proxy served here (no tagged release module exists).
SWFS_VERSION=${SWFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
ACCESS=imgfsweedaccess
SECRET=imgfs-weed-secret-0123456789
BUCKET=imgfs
IP=127.0.0.1
M_PORT=9333 V1_PORT=8081 V2_PORT=8082 F_PORT=8888 S3_PORT=8333

IMGFS_DEMO_OK= # set when the imgfs mount demo ran and passed (then the randomised test runs)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*"; }

weed_install() {
	# `go install github.com/seaweedfs/seaweedfs/weed@VERSION` is refused: SeaweedFS's go.mod
	# has replace directives. Build the module's source as the main module instead.
	local dir
	dir=$(cd /tmp && go mod download -json "github.com/seaweedfs/seaweedfs@$SWFS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] || { echo "cannot download seaweedfs $SWFS_VERSION" >&2; exit 1; }
	local src
	src=$(mktemp -d)
	cp -r "$dir/." "$src" && chmod -R u+w "$src"
	log "building weed from $SWFS_VERSION (several minutes on 2 cores)"
	(cd "$src" && GOFLAGS=-buildvcs=false go build -o "$(go env GOPATH)/bin/weed" ./weed)
	rm -rf "$src"
}

find_weed() {
	if [ -n "${WEED:-}" ]; then echo "$WEED"; return; fi
	if command -v weed >/dev/null; then command -v weed; return; fi
	local b
	b="$(go env GOPATH)/bin/weed"
	[ -x "$b" ] || weed_install >&2
	echo "$b"
}

wait_http() { # URL WHAT
	for _ in $(seq 1 150); do
		if curl -s -o /dev/null --max-time 1 "$1"; then return 0; fi
		sleep 0.2
	done
	echo "$2 did not come up; logs in $W/logs" >&2
	return 1
}

start_bg() { # NAME CMD...
	local name=$1
	shift
	setsid "$@" >"$W/logs/$name.log" 2>&1 &
	echo $! >"$W/pids/$name"
}

start() {
	WEED_BIN=$(find_weed)
	for p in $M_PORT $V1_PORT $V2_PORT $F_PORT $S3_PORT; do
		if ss -ltn "sport = :$p" | grep -q LISTEN; then
			echo "port $p is taken (a cluster already running? $0 stop)" >&2
			exit 1
		fi
	done
	mkdir -p "$W"/{master,v1,v2,filer,logs,pids}
	cat >"$W/s3.json" <<EOF
{"identities": [{"name": "imgfs", "credentials": [{"accessKey": "$ACCESS", "secretKey": "$SECRET"}],
  "actions": ["Admin", "Read", "List", "Write"]}]}
EOF
	log "master on $IP:$M_PORT (replication 001, telemetry off)"
	start_bg master "$WEED_BIN" master -ip=$IP -ip.bind=$IP -port=$M_PORT -mdir="$W/master" -peers=none \
		-defaultReplication=001 -volumeSizeLimitMB=256 -telemetry=false
	wait_http "http://$IP:$M_PORT/cluster/status" master
	log "volume servers on $IP:$V1_PORT and $IP:$V2_PORT (one rack)"
	start_bg v1 "$WEED_BIN" volume -ip=$IP -ip.bind=$IP -port=$V1_PORT -dir="$W/v1" -master=$IP:$M_PORT \
		-dataCenter=dc1 -rack=rack1 -max=30
	start_bg v2 "$WEED_BIN" volume -ip=$IP -ip.bind=$IP -port=$V2_PORT -dir="$W/v2" -master=$IP:$M_PORT \
		-dataCenter=dc1 -rack=rack1 -max=30
	wait_http "http://$IP:$V1_PORT/status" "volume server 1"
	wait_http "http://$IP:$V2_PORT/status" "volume server 2"
	for _ in $(seq 1 100); do
		st=$(curl -s "http://$IP:$M_PORT/dir/status" || true)
		if grep -q ":$V1_PORT" <<<"$st" && grep -q ":$V2_PORT" <<<"$st"; then break; fi
		sleep 0.2
	done
	log "filer on $IP:$F_PORT"
	start_bg filer "$WEED_BIN" filer -ip=$IP -ip.bind=$IP -port=$F_PORT -master=$IP:$M_PORT \
		-defaultStoreDir="$W/filer"
	wait_http "http://$IP:$F_PORT/" filer
	log "S3 gateway on $IP:$S3_PORT"
	start_bg s3 "$WEED_BIN" s3 -ip.bind=$IP -port=$S3_PORT -filer=$IP:$F_PORT -config="$W/s3.json" \
		-port.iceberg=0 -port.lance=0
	wait_http "http://$IP:$S3_PORT/" "S3 gateway"
	cat >"$W/env" <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1
export IMGFS_STORE=s3:http://$IP:$S3_PORT/$BUCKET
EOF
	log "cluster up: store URL s3:http://$IP:$S3_PORT/$BUCKET (credentials: source $W/env)"
}

stop() {
	[ -d "$W/pids" ] || return 0
	for n in s3 filer v2 v1 master; do
		if [ -f "$W/pids/$n" ]; then
			pid=$(cat "$W/pids/$n")
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
			rm -f "$W/pids/$n"
		fi
	done
	log "cluster stopped"
}

volumes() { # how many volumes each server holds
	curl -s "http://$IP:$M_PORT/vol/status" | tr ',' '\n' | grep -c '"Id"' || true
}

imgfs_demo() {
	# Only when the imgfs binary has the commands this needs.
	local bin=${IMGFS_BIN:-$REPO/bin/imgfs}
	if [ ! -x "$bin" ] || ! "$bin" mount --help >/dev/null 2>&1 || ! command -v fusermount3 >/dev/null; then
		log "imgfs mount demo skipped (needs bin/imgfs with mount, and fusermount3; run make build)"
		return 0
	fi
	local url=s3:http://$IP:$S3_PORT/$BUCKET/vault
	local mnt=$W/mnt src=$W/photos
	mkdir -p "$mnt" "$src"
	export IMGFS_PASSPHRASE=seaweed-demo-passphrase
	export XDG_CONFIG_HOME=$W/xdg-config XDG_CACHE_HOME=$W/xdg-cache XDG_STATE_HOME=$W/xdg-state
	log "imgfs probe against SeaweedFS"
	if ! "$bin" probe --store "$url"; then
		log "imgfs probe refuses SeaweedFS for writers (docs/stores.md); mount demo skipped"
		return 0
	fi
	for i in $(seq 1 20); do head -c $((200000 + RANDOM * 40)) /dev/urandom >"$src/photo$i.jpg"; done
	(cd "$src" && sha256sum ./* | sort -k2) >"$W/photos.sha256"
	log "imgfs: init a vault on the cluster, mount, copy 20 files, sync, unmount"
	"$bin" init --store "$url" >/dev/null
	"$bin" mount --store "$url" --cache "$W/cache1" "$mnt"
	cp "$src"/* "$mnt"/
	"$bin" sync "$mnt"
	"$bin" umount "$mnt"
	log "kill -9 volume server 2 (pid $(cat "$W/pids/v2"))"
	kill -9 "$(cat "$W/pids/v2")"
	rm -f "$W/pids/v2"
	sleep 1
	log "imgfs: mount read-only from an empty cache and read everything back"
	"$bin" mount --read-only --store "$url" --cache "$W/cache2" "$mnt"
	(cd "$mnt" && sha256sum ./* | sort -k2) >"$W/mount.sha256" || true
	"$bin" umount "$mnt"
	if diff -q "$W/photos.sha256" "$W/mount.sha256" >/dev/null; then
		log "imgfs: all 20 files read back byte-exact through the mount with one volume server dead"
		IMGFS_DEMO_OK=1
	else
		log "imgfs: MISMATCH between the copied files and the mount"
		return 1
	fi
}

demo() {
	trap stop EXIT
	start
	# shellcheck disable=SC1091
	. "$W/env"
	export IMGFS_S3_TEST_URL=s3:http://$IP:$S3_PORT/$BUCKET IMGFS_S3_TEST_OBJECTS=${OBJECTS:-40}
	log "conformance suite (backend/storetest) against SeaweedFS"
	go test -count=1 -run 'TestExternalConformance' ./backend/s3 | tail -3
	log "writing $IMGFS_S3_TEST_OBJECTS objects named by their SHA-256"
	IMGFS_S3_TEST_PHASE=write go test -count=1 -v -run 'TestExternalWriteVerify' ./backend/s3 | grep -E 'wrote|ok|FAIL|---'
	log "volumes per replica set: $(volumes) volume entries on the master"
	log "kill -9 volume server 2 (pid $(cat "$W/pids/v2"))"
	kill -9 "$(cat "$W/pids/v2")"
	rm -f "$W/pids/v2"
	sleep 1
	log "reading every object back with one volume server gone"
	IMGFS_S3_TEST_PHASE=verify go test -count=1 -v -run 'TestExternalWriteVerify' ./backend/s3 | grep -E 'verified|ok|FAIL|---'
	if [ -x "${IMGFS_BIN:-$REPO/bin/imgfs}" ]; then
		log "restarting volume server 2 for the imgfs demo"
		start_bg v2 "$(find_weed)" volume -ip=$IP -ip.bind=$IP -port=$V2_PORT -dir="$W/v2" -master=$IP:$M_PORT \
			-dataCenter=dc1 -rack=rack1 -max=30
		wait_http "http://$IP:$V2_PORT/status" "volume server 2"
		sleep 2
		imgfs_demo
		if [ -n "$IMGFS_DEMO_OK" ] && [ "${ITER:-1}" != 0 ]; then
			log "restarting volume server 2 for the randomised test"
			start_bg v2 "$(find_weed)" volume -ip=$IP -ip.bind=$IP -port=$V2_PORT -dir="$W/v2" -master=$IP:$M_PORT \
				-dataCenter=dc1 -rack=rack1 -max=30
			wait_http "http://$IP:$V2_PORT/status" "volume server 2"
			sleep 2
			log "randomised multi-device test with real mounts on SeaweedFS: ${DEVICES:-2} devices, ${ITER:-1} iteration(s) of ${STEPS:-45} steps"
			# The test gives every vault its own passphrase file and XDG folders.
			env -u IMGFS_PASSPHRASE IMGFS_BIN=${IMGFS_BIN:-$REPO/bin/imgfs} IMGFS_MULTIMOUNT_URL=$IMGFS_STORE IMGFS_MULTIMOUNT_DEVICES=${DEVICES:-2} \
				IMGFS_MULTIMOUNT_ITER=${ITER:-1} IMGFS_MULTIMOUNT_STEPS=${STEPS:-45} \
				go test ./integration/ -run '^TestRandomDevicesMounted$' -count=1 -v -timeout 2h 2>&1 |
				grep -E '^(---|ok|FAIL|PASS)|^ +--- |iterations passed|seed [0-9]+:|lost|fresh cache|no version' || true
		fi
	fi
	log "demo done"
}

case $CMD in
start) start ;;
stop) stop ;;
demo) demo ;;
*)
	echo "usage: $0 [demo|start|stop] [WORKDIR]" >&2
	exit 2
	;;
esac
