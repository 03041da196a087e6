package core

import (
	"bytes"
	"path/filepath"
	"testing"
)

// A read-only open of a crashed cache without unsynced work shows the newest root and
// changes nothing in the cache (all but the read cache obj/): it works on a scratch copy
// of the bbolt, deleted at Close (docs/core.md, "Open").
func TestReadOnlyOpenCleanCacheUnchanged(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	a := e.device("a")
	f := a.open()
	mine := randBytes(50_000)
	writeFile(t, f, "/mine", mine)
	ok(t, f.Sync(ctx()))
	f.crash()

	g := e.device("b").open()
	theirs := randBytes(70_000)
	writeFile(t, g, "/theirs", theirs)
	ok(t, g.Sync(ctx()))

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	before := fileSums(t, a.cache)
	ro := *a
	ro.opts.ReadOnly = true
	h := ro.open()
	for p, want := range map[string][]byte{"/mine": mine, "/theirs": theirs} {
		if got := readFile(t, h, p); !bytes.Equal(got, want) {
			t.Fatalf("read-only open: %s reads %d bytes, want %d", p, len(got), len(want))
		}
	}
	// A refresh (a read-only mount's poll) merges into the copy too.
	more := randBytes(1000)
	writeFile(t, g, "/more", more)
	ok(t, g.Sync(ctx()))
	ok(t, h.Refresh(ctx()))
	if got := readFile(t, h, "/more"); !bytes.Equal(got, more) {
		t.Fatal("read-only open: a refresh did not show the newer root")
	}
	ok(t, h.Close())
	after := fileSums(t, a.cache)
	for p, s := range before {
		if after[p] != s {
			t.Errorf("read-only open changed %s", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("read-only open changed the cache's file set: %d -> %d files", len(before), len(after))
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "imgfs-ro-*")); len(left) > 0 {
		t.Errorf("scratch copy left behind: %v", left)
	}
	// The cache itself is still at its old root, and a writer open brings it up.
	f = a.open()
	if got := readFile(t, f, "/theirs"); !bytes.Equal(got, theirs) {
		t.Fatal("writer open after the read-only one: /theirs differs")
	}
}
