#!/usr/bin/env bash
# A Ceph RGW cluster on this host's loopback as imgfs's scale-out store (docs/stores.md):
# 1 monitor, 1 manager, 3 OSDs (memstore, or BlueStore on sparse files with OBJECTSTORE=bluestore),
# 1 RADOS gateway, everything under one work directory and bound to 127.0.0.1. Not part of CI
# (it installs Debian packages and needs about 0.6 GB of RAM).
#
#   bench/ceph-rgw.sh demo  [WORKDIR]  install if missing, start, create a user, run imgfs probe
#                                      against RGW (and against SeaweedFS when weed is installed,
#                                      to show the probe refusing it), run the randomised
#                                      multi-device test with real mounts on RGW, stop (default)
#   bench/ceph-rgw.sh start [WORKDIR]  install if missing, start, print the store URL; credentials
#                                      in WORKDIR/env
#   bench/ceph-rgw.sh stop  [WORKDIR]  stop every daemon start started (by pid file)
#
# WORKDIR defaults to /tmp/imgfs-ceph. Environment: RGW_PORT (7480), ITER (iterations of the
# randomised test, 1), STEPS (steps per iteration, 45), DEVICES (mounted devices, 2),
# OBJECTSTORE (memstore).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
cd "$(dirname "$0")/.."
REPO=$PWD
CMD=${1:-demo}
W=${2:-/tmp/imgfs-ceph}
IP=127.0.0.1
RGW_PORT=${RGW_PORT:-7480}
ACCESS=imgfscephaccess
SECRET=imgfs-ceph-secret-0123456789
BUCKET=imgfs
CONF=$W/ceph.conf

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*"; }

install() {
	if command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
		command -v ceph-mgr >/dev/null && command -v radosgw-admin >/dev/null; then
		return
	fi
	log "installing Ceph from Debian (radosgw ceph-mon ceph-osd ceph-mgr ceph-common)"
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		radosgw ceph-mon ceph-osd ceph-mgr ceph-common uuid-runtime >/dev/null
}

ceph_() { ceph -c "$CONF" --connect-timeout 10 "$@"; }

write_conf() {
	local fsid=$1
	cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = [v2:$IP:3300,v1:$IP:6789]
mon initial members = a
public addr = $IP
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
run dir = $W/run
admin socket = $W/run/\$name.asok
pid file = $W/run/\$name.pid
log file = $W/log/\$name.log
mon data = $W/mon/\$cluster-\$id
mgr data = $W/mgr/\$cluster-\$id
osd data = $W/osd/\$cluster-\$id
osd objectstore = ${OBJECTSTORE:-memstore}
memstore device bytes = 2147483648
bluestore block path = $W/osd-blocks/\$id.block
bluestore block create = true
bluestore block size = 4294967296
keyring = $W/keyring
[client.rgw.a]
rgw frontends = beast endpoint=$IP:$RGW_PORT
rgw data = $W/rgw
ms mon client mode = crc
auth client required = none
EOF
}

start() {
	install
	for p in 3300 6789 "$RGW_PORT"; do
		if ss -ltn "sport = :$p" | grep -q LISTEN; then
			echo "port $p is taken (a cluster already running? $0 stop $W)" >&2
			exit 1
		fi
	done
	rm -rf "$W"
	mkdir -p "$W"/{run,log,mon/ceph-a,mgr/ceph-x,rgw,osd-blocks}
	local t0=$SECONDS
	write_conf "$(uuidgen)"
	touch "$W/keyring"
	log "monitor a on $IP:3300/6789"
	ceph-authtool --create-keyring "$W/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	monmaptool --create --fsid "$(sed -n 's/^fsid = //p' "$CONF")" --addv a "[v2:$IP:3300,v1:$IP:6789]" "$W/monmap" >/dev/null
	ceph-mon -c "$CONF" --mkfs -i a --monmap "$W/monmap" --keyring "$W/mon.keyring"
	ceph-mon -c "$CONF" -i a 2>>"$W/log/start.err"
	ceph_ -s >/dev/null
	log "manager x"
	ceph-mgr -c "$CONF" -i x 2>>"$W/log/start.err"
	for n in 0 1 2; do
		local uuid id
		uuid=$(uuidgen)
		id=$(ceph_ osd new "$uuid")
		mkdir -p "$W/osd/ceph-$id"
		ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
		ceph-osd -c "$CONF" -i "$id" 2>>"$W/log/start.err"
		log "OSD $id (${OBJECTSTORE:-memstore})"
	done
	for _ in $(seq 1 150); do
		if ceph_ osd stat 2>/dev/null | grep -q '3 up.*3 in'; then break; fi
		sleep 0.2
	done
	ceph_ osd stat | grep -q '3 up.*3 in' || { echo "OSDs did not come up; logs in $W/log" >&2; exit 1; }
	log "RADOS gateway on $IP:$RGW_PORT"
	radosgw -c "$CONF" -n client.rgw.a 2>>"$W/log/start.err"
	for _ in $(seq 1 300); do
		if curl -s -o /dev/null --max-time 1 "http://$IP:$RGW_PORT/"; then break; fi
		sleep 0.2
	done
	curl -s -o /dev/null --max-time 2 "http://$IP:$RGW_PORT/" || { echo "radosgw did not answer; logs in $W/log" >&2; exit 1; }
	radosgw-admin -c "$CONF" user create --uid=imgfs --display-name=imgfs \
		--access-key="$ACCESS" --secret="$SECRET" >/dev/null
	cat >"$W/env" <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1
export IMGFS_STORE=s3:http://$IP:$RGW_PORT/$BUCKET
EOF
	log "cluster up in $((SECONDS - t0)) s: store URL s3:http://$IP:$RGW_PORT/$BUCKET (credentials: source $W/env)"
	ceph_ -s | sed 's/^/    /'
}

stop() {
	[ -d "$W/run" ] || return 0
	for name in client.rgw.a osd.2 osd.1 osd.0 mgr.x mon.a; do
		local f=$W/run/$name.pid
		[ -f "$f" ] || continue
		local pid
		pid=$(cat "$f")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$f"
	done
	log "cluster stopped"
}

imgfs_bin() {
	if [ ! -x "${IMGFS_BIN:-$REPO/bin/imgfs}" ]; then
		log "building bin/imgfs"
		make -s build >/dev/null
	fi
	echo "${IMGFS_BIN:-$REPO/bin/imgfs}"
}

probe_seaweedfs() {
	local weed=${WEED:-$(command -v weed || true)}
	[ -n "$weed" ] || { [ -x "$(go env GOPATH)/bin/weed" ] && weed=$(go env GOPATH)/bin/weed; }
	if [ -z "$weed" ]; then
		log "SeaweedFS probe skipped: no weed binary (bench/seaweedfs-cluster.sh builds it, several minutes)"
		return 0
	fi
	log "imgfs probe against SeaweedFS (bench/seaweedfs-cluster.sh start)"
	WEED=$weed bash bench/seaweedfs-cluster.sh start "$W/seaweedfs" >/dev/null
	(
		# shellcheck disable=SC1091
		. "$W/seaweedfs/env"
		"$1" probe --store "$IMGFS_STORE/probe-test" || log "imgfs probe refused SeaweedFS (exit $?)"
	) | sed 's/^/    /'
	bash bench/seaweedfs-cluster.sh stop "$W/seaweedfs" >/dev/null
}

demo() {
	trap stop EXIT
	start
	local bin
	bin=$(imgfs_bin)
	# shellcheck disable=SC1091
	. "$W/env"
	log "imgfs probe against Ceph RGW"
	"$bin" probe --store "$IMGFS_STORE/probe-test" | sed 's/^/    /'
	probe_seaweedfs "$bin"
	log "randomised multi-device test with real mounts on RGW: ${DEVICES:-2} devices, ${ITER:-1} iteration(s) of ${STEPS:-45} steps"
	IMGFS_BIN=$bin IMGFS_MULTIMOUNT_URL=$IMGFS_STORE IMGFS_MULTIMOUNT_DEVICES=${DEVICES:-2} \
		IMGFS_MULTIMOUNT_ITER=${ITER:-1} IMGFS_MULTIMOUNT_STEPS=${STEPS:-45} \
		go test ./integration/ -run '^TestRandomDevicesMounted$' -count=1 -v -timeout 2h 2>&1 |
		grep -E '^(---|ok|FAIL|PASS)|^ +--- |iterations passed|seed [0-9]+:|lost|fresh cache|no version' || true
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
