#!/bin/bash
# Near-duplicate quality through a real mount: copies the neardup DEV set into a fresh vault,
# waits for the embeddings (imgfs sync), exports every pair with `imgfs similar --all --json`
# (down to a score of 0.3, so the ranking metrics see the pairs below the threshold too) and
# the pairs .similar/ shows (`--all` without --threshold: the threshold's and the verified
# ones, docs/similar.md), and scores them with neardup/score.py: the decision column says
# whether .similar/ shows the pair; a second run ranks the shown pairs first (score + 1).
#   bash bench/similar-neardup.sh [ND_DIR]   (default /tmp/nd; made with make-variants.sh -s dev-v1)
#   SIMND_OUT=DIR keeps preds.tsv, rank.tsv and shown.json there.
set -euo pipefail
ND=${1:-/tmp/nd}
SHARED=${SHARED:-/work/shared/neardup}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$ND/truth.tsv" ] || bash "$SHARED/make-variants.sh" -s dev-v1 "$SHARED/originals" "$ND"
NAME=simnd
. "$ROOT/bench/fresh-vault.sh"
start=$(date +%s)
cp -r "$ND/images" $T/mnt/nd
$T/imgfs sync $T/mnt
echo "copied and indexed $(ls $T/mnt/nd | wc -l) images in $(( $(date +%s) - start )) s"
$T/imgfs status $T/mnt | grep -i similar || true
$T/imgfs similar --all --json --threshold 0.3 $T/mnt > $T/all.json
$T/imgfs similar --all --json $T/mnt > $T/shown.json
TH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["threshold"])' $T/shown.json)
python3 - "$T/all.json" "$T/shown.json" $T/preds.tsv $T/rank.tsv <<'PY'
import json, sys, os
key = lambda p: (os.path.basename(p["a"]), os.path.basename(p["b"]))
shown = {key(p) for p in json.load(open(sys.argv[2])).get("pairs", [])}
with open(sys.argv[3], "w") as f, open(sys.argv[4], "w") as r:
    for p in json.load(open(sys.argv[1])).get("pairs", []):
        d = int(key(p) in shown)
        f.write("%s\t%s\t%.6f\t%d\n" % (key(p) + (p["score"], d)))
        r.write("%s\t%s\t%.6f\t%d\n" % (key(p) + (p["score"] + d, d)))
PY
echo "pairs shown by .similar/: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("pairs", [])))' $T/shown.json) (floor $TH)"
[ -z "${SIMND_OUT:-}" ] || { mkdir -p "$SIMND_OUT" && cp $T/preds.tsv $T/rank.tsv $T/shown.json "$SIMND_OUT/"; }
python3 "$SHARED/score.py" --name "imgfs .similar (mount, shown pairs; ranked by score)" $T/preds.tsv "$ND/truth.tsv"
python3 "$SHARED/score.py" --name "imgfs .similar (mount, shown pairs first)" $T/rank.tsv "$ND/truth.tsv"
