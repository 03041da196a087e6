#!/usr/bin/env bash
# Installs the S3 server the tests run against: versitygw v1.8.0 (Apache-2.0), built from the
# Go module proxy into $(go env GOPATH)/bin (normally $HOME/go/bin). Idempotent: does nothing
# when that binary already is v1.8.0. Tests find it on PATH, in $HOME/go/bin, or via
# $IMGFS_VERSITYGW.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
VERSION=v1.8.0
BIN_DIR="$(go env GOPATH)/bin"
BIN="$BIN_DIR/versitygw"
if [ -x "$BIN" ] && go version -m "$BIN" 2>/dev/null | grep -qE "^\s+mod\s+github.com/versity/versitygw\s+$VERSION(\s|$)"; then
	echo "versitygw $VERSION already installed: $BIN"
	exit 0
fi
echo "installing versitygw $VERSION into $BIN_DIR (go install; takes a minute)"
# Build outside the repository so its go.mod is not consulted.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
GOBIN="$BIN_DIR" GOFLAGS=-buildvcs=false go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
go version -m "$BIN" | grep -E "^\s+mod\s+github.com/versity/versitygw" >/dev/null
echo "installed: $BIN"
