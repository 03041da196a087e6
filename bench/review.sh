#!/usr/bin/env bash
# imgfs review through a real mount (docs/review.md, "Performance"): one group of three
# 12 MP JPEGs (an original, a recompressed copy, a brighter copy); prints the time of the
# page load (page, script, first page of groups) and of the group's three thumbnails,
# fetched at once with a cold thumbnail cache (a new imgfs review each round). Then 1,000
# groups: 1,000 distinct small files with two byte-identical copies each (3,000 files; not
# images, so nothing is embedded and the run stays short, but the daemon pairs and the page
# groups them as any identical copies), and the time of the page load with those.
#   bash bench/review.sh [ROUNDS]      (default 5)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=review
ROUNDS=${1:-5}
source "$ROOT/bench/fresh-vault.sh"
mkdir -p $T/src
convert -size 4000x3000 -seed 3 plasma:fractal -blur 0x1 -quality 92 $T/src/orig.jpg
convert $T/src/orig.jpg -quality 70 $T/src/recompressed.jpg
convert $T/src/orig.jpg -modulate 110 -quality 90 $T/src/brighter.jpg
ls -l $T/src
cp -r $T/src $T/mnt/photos
$T/imgfs sync $T/mnt
$T/imgfs similar --all $T/mnt
ms() { awk -v s="$1" 'BEGIN { printf "%.0f", s * 1000 }'; }
for r in $(seq "$ROUNDS"); do
	$T/imgfs review --no-browser $T/mnt > $T/review.out 2>&1 &
	pid=$!
	for _ in $(seq 100); do grep -q 'token=' $T/review.out && break; sleep 0.1; done
	url=$(grep -o 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' $T/review.out)
	base=${url%%/?token=*}; tok=${url##*token=}
	H="X-Imgfs-Token: $tok"
	t0=$(date +%s.%N)
	curl -sf -o /dev/null -H "$H" "$base/" && curl -sf -o /dev/null -H "$H" "$base/static/app.js" &&
		curl -sf -o $T/groups.json -H "$H" "$base/api/groups?page=0"
	t1=$(date +%s.%N)
	cs=()
	for f in orig recompressed brighter; do
		curl -sf -o $T/$f.thumb -H "$H" "$base/thumb?path=photos/$f.jpg" &
		cs+=($!)
	done
	for c in "${cs[@]}"; do wait "$c"; done
	t2=$(date +%s.%N)
	kill $pid; wait $pid 2>/dev/null || true
	echo "round $r: page load $(ms "$(echo "$t1 - $t0" | bc)") ms, 3 thumbnails of 12 MP $(ms "$(echo "$t2 - $t1" | bc)") ms"
done

mkdir -p $T/mnt/many/a $T/mnt/many/b $T/mnt/many/c
for i in $(seq -w 1000); do echo "group $i $RANDOM$RANDOM" > $T/mnt/many/a/f$i.txt; done
cp $T/mnt/many/a/* $T/mnt/many/b/ && cp $T/mnt/many/a/* $T/mnt/many/c/
$T/imgfs sync $T/mnt
echo "pairs: $($T/imgfs similar --all $T/mnt | wc -l)"
$T/imgfs review --no-browser $T/mnt > $T/review.out 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q 'token=' $T/review.out && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' $T/review.out)
base=${url%%/?token=*}; tok=${url##*token=}
H="X-Imgfs-Token: $tok"
for r in $(seq "$ROUNDS"); do
	t0=$(date +%s.%N)
	curl -sf -o /dev/null -H "$H" "$base/" && curl -sf -o /dev/null -H "$H" "$base/static/app.js" &&
		curl -sf -o $T/groups.json -H "$H" "$base/api/groups?page=0&fresh=1"
	t1=$(date +%s.%N)
	echo "round $r: page load with $(grep -o '"all":[0-9]*' $T/groups.json) groups: $(ms "$(echo "$t1 - $t0" | bc)") ms"
done
kill $pid; wait $pid 2>/dev/null || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
