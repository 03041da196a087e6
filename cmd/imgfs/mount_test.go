package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProbeMount: the mount table is read through moby/sys/mountinfo, with symlinks in the
// parent resolved (the dead and live imgfs cases are in integration's TestKill9DeadMount).
func TestProbeMount(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if st, _, err := probeMount(ctx, dir); err != nil || st != notMounted {
		t.Fatalf("temp dir: %v %v", st, err)
	}
	if st, fstype, err := probeMount(ctx, "/proc"); err != nil || st != otherMount || fstype != "proc" {
		t.Fatalf("/proc: %v %q %v", st, fstype, err)
	}
	link := filepath.Join(dir, "root")
	if err := os.Symlink("/", link); err != nil {
		t.Fatal(err)
	}
	if st, fstype, err := probeMount(ctx, filepath.Join(link, "proc")); err != nil || st != otherMount || fstype != "proc" {
		t.Fatalf("/proc through a symlinked parent: %v %q %v", st, fstype, err)
	}
}

func TestCheckMountpoint(t *testing.T) {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	dir := t.TempDir()
	if mp, err := checkMountpoint(dir); err != nil || mp != dir {
		t.Fatalf("empty dir: %q %v", mp, err)
	}
	os.WriteFile(filepath.Join(dir, "f"), nil, 0o644)
	if _, err := checkMountpoint(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty dir: %v", err)
	}
	if _, err := checkMountpoint(filepath.Join(dir, "f")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file: %v", err)
	}
	if _, err := checkMountpoint(filepath.Join(dir, "nosuch")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: %v", err)
	}
	if _, err := checkMountpoint("/proc"); err == nil || !strings.Contains(err.Error(), "already a mount point") {
		t.Fatalf("/proc: %v", err)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
