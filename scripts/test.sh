#!/usr/bin/env bash
# The whole test suite: vet, unit and integration tests (real FUSE mounts, a real S3 server,
# the real model), then a brief run of every fuzz target (FUZZTIME each, default 10000x).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
# An execution count, not a duration: Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" failure when a -fuzztime duration expires under load
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
fuzztime=${FUZZTIME:-10000x}

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -count=1 -timeout 40m ./...

# Every fuzz target of every package, seeded by its corpus, for a short while each.
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
	pkg=./$(dirname "${file#./}")
	for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
		echo "fuzz $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/imgfs-fuzz.log 2>&1 ||
			{ cat /tmp/imgfs-fuzz.log; exit 1; }
	done
done
echo "all tests passed"
