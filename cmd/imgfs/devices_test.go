package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/fs/core"
)

// rootsDown fails root writes while down is set (the store is unreachable for commits).
type rootsDown struct {
	backend.Store
	down atomic.Bool
}

func (s *rootsDown) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if s.down.Load() && strings.HasPrefix(name, "r/") {
		return backend.Permanent(errors.New("simulated outage for roots"))
	}
	return s.Store.Put(ctx, name, r, size)
}

// A device goes away with work the store has not got in a root (its content uploaded, the
// root never written), for longer than any grace period. gc run meanwhile by another
// device must not delete that content: it refuses, naming the device, even with --grace 0
// (no clock is trusted). When the device comes back and syncs, gc runs and the vault checks
// clean from a fresh cache with the device's file in it.
func TestGCKeepsWorkOfDeviceAway(t *testing.T) {
	e := newEnv(t)
	pw, inner, keys := e.importedVault()
	src := filepath.Join(e.dir, "src") // importedVault's source tree
	store := &rootsDown{Store: inner}
	opts := core.Options{CacheDir: filepath.Join(e.dir, "laptop-cache"), Device: "laptop", RefreshInterval: -1}
	laptop, err := core.Open(context.Background(), store, keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	store.down.Store(true)
	_, h, err := laptop.Create(core.RootIno, "away.bin", 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	away := randBytes(5000)
	h.WriteAt(away, 0)
	if err := h.Fsync(context.Background()); err == nil {
		t.Fatal("fsync succeeded with roots down")
	}
	h.Release()
	laptop.Close() // the root commit fails: the laptop leaves with unsynced work

	// Meanwhile on another device: more imports (new roots), then gc with no grace at all.
	writeFile(t, filepath.Join(src, "b.bin"), randBytes(2000), 0o644, time.Now())
	e.must(pw, "import", "--store", e.store, src, "/more")
	before := listAll(t, e.store)
	r := e.run(pw, "gc", "--store", e.store, "--grace", "0")
	if r.code != exitBusy || !strings.Contains(r.stderr, "laptop") {
		t.Fatalf("gc while the laptop is away: exit %d (%s)", r.code, r.stderr)
	}
	after := listAll(t, e.store)
	for _, n := range before {
		if !contains(after, n) {
			t.Fatalf("%s deleted while a device was away with unsynced work", n)
		}
	}

	// The laptop comes back: it merges the newer roots and commits its file.
	store.down.Store(false)
	laptop, err = core.Open(context.Background(), store, keys, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := laptop.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := laptop.Close(); err != nil {
		t.Fatal(err)
	}
	e.must(pw, "gc", "--store", e.store, "--grace", "0")
	fresh := filepath.Join(e.dir, "fresh-cache")
	if r := e.must(pw, "check", "--store", e.store, "--cache", fresh, "--read-data"); !strings.Contains(r.stdout, "no problems found") {
		t.Fatalf("check after gc: %q", r.stdout)
	}
	out := filepath.Join(e.dir, "out")
	e.must(pw, "export", "--store", e.store, "--cache", fresh, "/", out)
	if got, err := os.ReadFile(filepath.Join(out, "away.bin")); err != nil || string(got) != string(away) {
		t.Fatalf("away.bin after gc: %v (%d bytes)", err, len(got))
	}
	for _, p := range []string{"a.bin", "more/a.bin", "more/b.bin"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}
