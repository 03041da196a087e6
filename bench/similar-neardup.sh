#!/bin/bash
# Near-duplicate quality through a real mount: copies the neardup DEV set into a fresh vault,
# waits for the embeddings (imgfs sync), exports every pair with `imgfs similar --all --json`
# (down to a score of 0.3, so the ranking metrics see the pairs below the threshold too) and
# scores it with neardup/score.py at the mount's threshold.
#   bash bench/similar-neardup.sh [ND_DIR]   (default /tmp/nd; made with make-variants.sh -s dev-v1)
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
TH=$($T/imgfs similar --all --json $T/mnt | python3 -c 'import json,sys; print(json.load(sys.stdin)["threshold"])')
python3 - "$T/all.json" > $T/preds.tsv <<'PY'
import json, sys, os
for p in json.load(open(sys.argv[1])).get("pairs", []):
    print("%s\t%s\t%.6f" % (os.path.basename(p["a"]), os.path.basename(p["b"]), p["score"]))
PY
python3 "$SHARED/score.py" --name "imgfs .similar (mount, threshold $TH)" --threshold "$TH" $T/preds.tsv "$ND/truth.tsv"
