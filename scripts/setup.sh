#!/usr/bin/env bash
# Installs what the build and the test suite need on a fresh Debian machine (idempotent):
# system packages, the S3 server the integration tests start (versitygw), and the model.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v rsync >/dev/null || need+=(rsync)
# Check the Debian binary itself: a stand-in named convert may come first on PATH.
[ -x /usr/bin/convert ] || need+=(imagemagick)
# The independent known-answer check (dedup/testdata/kat_check.py) uses pyca/cryptography.
/usr/bin/python3 -c 'import cryptography' 2>/dev/null || need+=(python3 python3-cryptography)
command -v npm >/dev/null || need+=(npm)
# libjpeg-turbo headers: embed/imgdecode decodes big JPEGs at reduced DCT scale through cgo.
[ -f /usr/include/jpeglib.h ] || need+=(libjpeg62-turbo-dev)
command -v gcc >/dev/null || need+=(gcc)
command -v script >/dev/null || need+=(bsdutils) # script(1): terminal prompt tests
# capsh: integration/killpriv_test.go writes as a process without CAP_FSETID.
[ -x /usr/sbin/capsh ] || [ -x /sbin/capsh ] || need+=(libcap2-bin)
# Headless Chromium: integration/review_test.go drives the imgfs review page in it (tests only).
[ "${IMGFS_SETUP_MINIMAL:-}" = 1 ] || command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
	SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "${IMGFS_SETUP_MINIMAL:-}" != 1 ]; then
	[ -f scripts/install-versitygw.sh ] && bash scripts/install-versitygw.sh
fi
bash scripts/fetch-model.sh
