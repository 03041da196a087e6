# Sourced by bench scripts (needs ROOT, the checkout, and NAME, a short tag): builds imgfs
# into a temp dir $T, gives it its own HOME/XDG dirs and a random passphrase, creates a vault
# on a local store ($T/store) and mounts it on $T/mnt; on exit it unmounts and removes $T.
T=$(mktemp -d "/tmp/imgfs-$NAME.XXXXXX")
(cd "$ROOT" && go build -o $T/imgfs ./cmd/imgfs)
export HOME=$T/home XDG_RUNTIME_DIR=$T/run XDG_CACHE_HOME=$T/cache XDG_DATA_HOME=$T/data
export IMGFS_MODEL=${IMGFS_MODEL:-$ROOT/models/mobilenet_v2.imgfsmodel}
mkdir -p $HOME $XDG_RUNTIME_DIR $XDG_CACHE_HOME $XDG_DATA_HOME $T/mnt && chmod 700 $XDG_RUNTIME_DIR
head -c 24 /dev/urandom | base64 > $T/pass
export IMGFS_PASSPHRASE_FILE=$T/pass
cleanup() { $T/imgfs umount $T/mnt >/dev/null 2>&1 || fusermount3 -u -z $T/mnt 2>/dev/null || true; rm -rf $T; }
trap cleanup EXIT
$T/imgfs init --store $T/store >/dev/null
$T/imgfs mount --store $T/store $T/mnt
