#!/bin/bash
# Root commits that the near-duplicate index costs (docs/similar.md, "Persistence"): copies
# N photos into a fresh vault, one every P seconds (as a camera import or a user saving
# edits does), `imgfs sync`, then `imgfs similar --reindex` (every photo embedded again, as
# after a model change), and counts the roots written in the store during each phase.
# Usage: bash bench/similar-roots.sh DIR_OF_JPEGS [N] [P]
set -euo pipefail
SRC=$1
N=${2:-10}
P=${3:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NAME=simroots
. "$ROOT/bench/fresh-vault.sh"
roots() { find $T/store -path '*r/*' -type f | wc -l; }
mapfile -t files < <(find "$SRC" -iname '*.jpg' | sort | head -n "$N")
r0=$(roots)
for f in "${files[@]}"; do
	cp "$f" $T/mnt/
	sleep "$P"
done
$T/imgfs sync $T/mnt >/dev/null
r1=$(roots)
$T/imgfs similar --reindex $T/mnt >/dev/null 2>&1
r2=$(roots)
$T/imgfs sync $T/mnt >/dev/null
r3=$(roots)
echo "copy ${#files[@]} photos one every ${P}s + sync: $((r1 - r0)) roots; reindex: $((r2 - r1)) roots, then sync: $((r3 - r2))"
