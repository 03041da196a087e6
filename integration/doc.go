// Package integration holds end-to-end tests: they build the real imgfs binary, create
// vaults, mount them for real with FUSE and run real programs (cp, rsync, tar, ImageMagick)
// against the mounts. The harness is in harness_test.go; see its comment for the knobs.
package integration
