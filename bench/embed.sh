#!/usr/bin/env bash
# Embedding speed on 12 MP JPEGs, 2 cores: `imgfs embed` end to end (decode + resize +
# forward pass + hashes) with libjpeg-turbo DCT-scaled decoding and with the pure-Go build
# (image/jpeg, full-size decode), the forward pass alone (go test -bench), and the original
# model in TensorFlow.js on the same machine in the same run. Memory per worker from the
# peak RSS of 1 vs 2 workers. Reports wall time and CPU time (CPU time per photo is the
# steadier number when other processes share the machine; the load average is printed).
#
#   bash bench/embed.sh [N_PHOTOS]        (default 16; needs /usr/bin/convert, npm for tfjs)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
N=${1:-16}
W=${IMGFS_BENCH_DIR:-/tmp/imgfs-bench-embed}
ORIG=${NEARDUP_ORIGINALS:-/work/shared/neardup/originals}
MODEL=${IMGFS_MODEL:-models/mobilenet_v2.imgfsmodel}
CPUS=${BENCH_CPUS:-0,1}
[ -f "$MODEL" ] || bash scripts/fetch-model.sh
mkdir -p "$W/photos"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"

# 12 MP (4000x3000) test photos: neardup originals upscaled with light noise (so the
# entropy is camera-like), or plasma fractals when the originals are absent. Quality 90.
i=0
srcs=()
if [ -d "$ORIG" ]; then mapfile -t srcs < <(ls "$ORIG"/*/*.jpg "$ORIG"/*/*.png 2>/dev/null | head -n "$N"); fi
while [ "$i" -lt "$N" ]; do
	out="$W/photos/p$(printf %03d "$i").jpg"
	if [ ! -s "$out" ]; then
		if [ "$i" -lt "${#srcs[@]}" ]; then
			/usr/bin/convert "${srcs[$i]}" -resize '4000x3000!' -attenuate 0.3 +noise Gaussian -quality 90 "$out"
		else
			/usr/bin/convert -size 4000x3000 -seed "$i" plasma:fractal -quality 90 "$out"
		fi
	fi
	i=$((i + 1))
done
photos=("$W"/photos/p*.jpg)
photos=("${photos[@]:0:$N}")
echo "== $N photos, 4000x3000, $(du -cb "${photos[@]}" | tail -1 | cut -f1) bytes"

go build -o "$W/imgfs" ./cmd/imgfs
go build -tags imgfs_nolibjpeg -o "$W/imgfs-purego" ./cmd/imgfs

run() { # name binary workers
	local t
	t=$( { /usr/bin/time -f '%e %U %S %M' taskset -c "$CPUS" env GOMAXPROCS=2 IMGFS_MODEL="$MODEL" \
		"$2" embed --workers "$3" "${photos[@]}" >/dev/null; } 2>&1 | tail -1)
	read -r wall usr sys rss <<<"$t"
	awk -v n="$N" -v w="$wall" -v u="$usr" -v s="$sys" -v r="$rss" -v name="$1" -v k="$3" 'BEGIN {
		printf "%-34s workers=%d  %6.2f photos/s wall  %7.1f cpu-ms/photo  (=> %5.2f photos/s on 2 idle cores)  peak RSS %4.0f MiB\n",
			name, k, n / w, (u + s) * 1000 / n, 2 * n / ((u + s)), r / 1024 }'
}
echo "== imgfs embed, taskset -c $CPUS, GOMAXPROCS=2"
for rep in 1 2; do
	run "libjpeg-turbo DCT-scaled decode" "$W/imgfs" 2
	run "pure Go (image/jpeg full decode)" "$W/imgfs-purego" 2
done
run "libjpeg-turbo DCT-scaled decode" "$W/imgfs" 1
run "pure Go (image/jpeg full decode)" "$W/imgfs-purego" 1

echo "== go test -bench (1 core)"
taskset -c "$CPUS" go test -run '^$' -bench 'Embed224|Forward|Decode12MP|Hashes12MP' -benchtime 10x -cpu 1 ./embed/ |
	grep -E '^Benchmark'

echo "== original model, TensorFlow.js in node (same machine, same run)"
if command -v npm >/dev/null; then
	mkdir -p "$W/tfjs"
	cp embed/testdata/parity/package.json embed/testdata/parity/package-lock.json "$W/tfjs/"
	if [ ! -d "$W/tfjs/node_modules/nsfwjs" ]; then (cd "$W/tfjs" && npm ci --silent --no-audit --no-fund); fi
	NODE_PATH="$W/tfjs/node_modules" taskset -c "$CPUS" node bench/embed-tfjs.js cpu
	if [ ! -d "$W/tfjs/node_modules/@tensorflow/tfjs-backend-wasm" ]; then
		(cd "$W/tfjs" && npm install --silent --no-audit --no-fund --no-save @tensorflow/tfjs-backend-wasm@4.22.0) || true
	fi
	if [ -d "$W/tfjs/node_modules/@tensorflow/tfjs-backend-wasm" ]; then
		NODE_PATH="$W/tfjs/node_modules" taskset -c "$CPUS" node bench/embed-tfjs.js wasm || true
	fi
else
	echo "npm missing: skipped"
fi
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
