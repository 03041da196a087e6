#!/usr/bin/env bash
# bench/exifbench.sh: bytes stored when exiftool rewrites a photo's metadata in place on an
# imgfs mount (format v2 chunk-level dedup, docs/format.md §11).
#
# For each photo: copy it into the mount, `imgfs sync`, note the content objects; then
# `exiftool -overwrite_original_in_place` adds an XMP subject and a long EXIF comment
# (the metadata grows, so the pixel data after it moves), `imgfs sync`, and count the bytes of
# the content objects that are new. Photos: PHOTOS (default: 5 JPEGs of BSDS500 and 3 Kodak
# photos converted to JPEG, each also upscaled to 6000x4000 with noise added, the size of a
# camera JPEG, from
# /work/shared/neardup/originals or NEARDUP). Needs exiftool (libimage-exiftool-perl),
# ImageMagick, fuse3.
#
# Usage: bench/exifbench.sh     Env: IMGFS, WORK, KEEP=1, NEARDUP.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH=/usr/local/go/bin:$PATH
IMGFS=${IMGFS:-$REPO/bin/imgfs}
NEARDUP=${NEARDUP:-/work/shared/neardup}
WORK=${WORK:-$(mktemp -d /var/tmp/exifbench.XXXX)}
for tool in exiftool convert fusermount3; do
	command -v $tool >/dev/null || { echo "exifbench: $tool missing" >&2; exit 1; }
done
[ -x "$IMGFS" ] || go build -o "$IMGFS" ./cmd/imgfs
cleanup() {
	fusermount3 -u "$WORK/mnt" 2>/dev/null || true
	if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/src" "$WORK/store" "$WORK/cache" "$WORK/mnt"
n=0
for p in $(ls "$NEARDUP"/originals/bsds500-test/*.jpg | head -5); do
	cp "$p" "$WORK/src/$(basename "$p")"
done
for p in $(ls "$NEARDUP"/originals/kodak/*.png | head -${NKODAK:-6}); do
	b=$(basename "$p" .png)
	convert "$p" -quality 92 "$WORK/src/$b.jpg"
	# camera size: upscaled, with sensor-like noise so it compresses like a camera JPEG
	convert "$p" -resize 6000x4000! -attenuate 0.2 +noise Gaussian -quality 92 "$WORK/src/$b-24mp.jpg"
done
echo "exifbench passphrase" >"$WORK/pass"
export IMGFS_PASSPHRASE_FILE=$WORK/pass
IMGFS_KDF_MEMORY_KIB=65536 "$IMGFS" init --store "$WORK/store" >/dev/null
"$IMGFS" mount --store "$WORK/store" --cache "$WORK/cache" "$WORK/mnt" 2>>"$WORK/imgfs.log"
objects() { mkdir -p "$WORK/store/c"; find "$WORK/store/c" -type f -printf '%p %s\n' | sort; }
printf '| photo | file bytes | objects | stored on import | objects after edit | new bytes stored after edit | new / file |\n|---|---|---|---|---|---|---|\n'
for p in "$WORK"/src/*.jpg; do
	b=$(basename "$p")
	objects >"$WORK/before"
	cp "$p" "$WORK/mnt/$b"
	"$IMGFS" sync "$WORK/mnt" >/dev/null
	objects >"$WORK/imported"
	imp=$(comm -13 "$WORK/before" "$WORK/imported" | awk '{s+=$2; n++} END {print n+0, s+0}')
	exiftool -q -overwrite_original_in_place -XMP-dc:Subject+=imgfs-bench \
		-EXIF:UserComment="$(printf 'edited by exifbench %.0s' {1..20})" "$WORK/mnt/$b"
	"$IMGFS" sync "$WORK/mnt" >/dev/null
	objects >"$WORK/edited"
	new=$(comm -13 "$WORK/imported" "$WORK/edited" | awk '{s+=$2; n++} END {print n+0, s+0}')
	size=$(stat -c %s "$WORK/mnt/$b")
	read -r ino_n ino_b <<<"$imp"
	read -r new_n new_b <<<"$new"
	printf '| %s | %d | %d | %d | %d | %d | %.2f |\n' "$b" "$size" "$ino_n" "$ino_b" "$new_n" "$new_b" \
		"$(python3 -c "print($new_b / $size)")"
done
