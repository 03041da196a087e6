package core

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
	"github.com/imgfs/imgfs/dedup/maint"
	"github.com/imgfs/imgfs/fs/core/rootsync"
	bolt "go.etcd.io/bbolt"
)

// Two caches of one vault (issue "many devices, one vault"; docs/core.md, "Several devices").

// device returns an env for another cache on the same store and keys.
func (e *env) device(name string) *env {
	d := *e
	d.cache = filepath.Join(e.t.TempDir(), name)
	d.opts.Device = name
	return &d
}

// fileSums hashes every file in the cache directory below dir (spool, state).
func fileSums(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	ok(t, filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.Contains(p, string(filepath.Separator)+"obj"+string(filepath.Separator)) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = sha256.Sum256(b)
		return nil
	}))
	return out
}

// Case ro: a read-only open of a crashed device's cache, after another device committed,
// must not drop that cache's pending work (it used to rebuild and delete the spool).
func TestReadOnlyOpenKeepsPendingWork(t *testing.T) {
	e := newEnv(t)
	fs := &failStore{Store: e.store}
	e.store = fs
	a := e.device("a")
	f := a.open()
	small := randBytes(10_000)
	writeFile(t, f, "/small", small)
	ok(t, f.Sync(ctx()))
	fs.fail.Store(true) // A's big file stays in its spool
	big := randBytes(3 << 20)
	writeFile(t, f, "/big", big)
	f.crash()
	fs.fail.Store(false)

	b := e.device("b")
	g := b.open()
	bfile := randBytes(300_000)
	writeFile(t, g, "/b", bfile)
	ok(t, g.Sync(ctx()))
	ok(t, g.Close())

	before := fileSums(t, a.cache)
	ro := *a
	ro.opts.ReadOnly = true
	h := ro.open()
	if got := readFile(t, h, "/big"); !bytes.Equal(got, big) {
		t.Fatal("read-only open: /big differs")
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

	f = a.open()
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	fresh := e.device("fresh")
	k := fresh.open()
	for p, want := range map[string][]byte{"/small": small, "/big": big, "/b": bfile} {
		if got := readFile(t, k, p); !bytes.Equal(got, want) {
			t.Errorf("fresh cache: %s differs (%d bytes, want %d)", p, len(got), len(want))
		}
	}
}

// Case rw: a writer with local changes that finds newer roots merges them instead of
// reverting them.
func TestWriterMergesNewerRoot(t *testing.T) {
	e := newEnv(t)
	fs := &failStore{Store: e.store}
	e.store = fs
	a := e.device("a")
	f := a.open()
	writeFile(t, f, "/small", []byte("small"))
	ok(t, f.Sync(ctx()))
	fs.fail.Store(true)
	big := randBytes(1 << 20)
	writeFile(t, f, "/big", big)
	f.crash()
	fs.fail.Store(false)

	g := e.device("b").open()
	writeFile(t, g, "/b", []byte("from b"))
	ok(t, g.Sync(ctx()))
	ok(t, g.Close())

	f = a.open()
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	k := e.device("fresh").open()
	if got := string(readFile(t, k, "/b")); got != "from b" {
		t.Fatalf("/b: %q", got)
	}
	if got := readFile(t, k, "/big"); !bytes.Equal(got, big) {
		t.Fatal("/big differs")
	}
	if got := string(readFile(t, k, "/small")); got != "small" {
		t.Fatalf("/small: %q", got)
	}
}

func names(t *testing.T, f *FS, dir string) []string {
	t.Helper()
	ents, err := f.ReadDir(must(f.Resolve(dir)))
	ok(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out
}

// Two writers open at once: the second commit conflicts, merges and commits on top.
func TestConcurrentWritersMerge(t *testing.T) {
	e := newEnv(t)
	f := e.device("laptop").open()
	ok(t, f.Mkdir2(t, "/shared"))
	writeFile(t, f, "/shared/base.txt", []byte("base"))
	writeFile(t, f, "/gone-on-a", []byte("x"))
	writeFile(t, f, "/edit-vs-delete", []byte("v1"))
	writeFile(t, f, "/renamed", []byte("r"))
	ok(t, f.Sync(ctx()))
	g := e.device("desktop").open()
	if got := string(readFile(t, g, "/shared/base.txt")); got != "base" {
		t.Fatal(got)
	}
	// Both change things at the same time.
	writeFile(t, f, "/shared/a.txt", []byte("from a"))
	writeFile(t, g, "/shared/b.txt", []byte("from b"))
	writeFile(t, f, "/shared/base.txt", []byte("a's version"))
	writeFile(t, g, "/shared/base.txt", []byte("b's version, later"))
	ok(t, f.Remove(RootIno, "edit-vs-delete", false))
	writeFile(t, g, "/edit-vs-delete", []byte("v2 from b"))
	ok(t, g.Remove(RootIno, "gone-on-a", false))
	ok(t, f.Rename(RootIno, "renamed", RootIno, "renamed-by-a"))
	ok(t, g.Rename(RootIno, "renamed", RootIno, "renamed-by-b"))
	ok(t, f.Mkdir2(t, "/new"))
	writeFile(t, f, "/new/fa", []byte("fa"))
	ok(t, g.Mkdir2(t, "/new"))
	writeFile(t, g, "/new/fb", []byte("fb"))
	ok(t, f.Sync(ctx()))
	ok(t, g.Sync(ctx())) // conflicts with f's root: merges it
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())
	ok(t, g.Close())

	k := e.device("fresh").open()
	if got := names(t, k, "/shared"); strings.Join(got, ",") != "a.txt,b.txt,base (conflict laptop "+conflictStamp(t, k)+").txt,base.txt" {
		t.Fatalf("/shared: %q", got)
	}
	if got := string(readFile(t, k, "/shared/base.txt")); got != "b's version, later" {
		t.Fatalf("base.txt: %q", got)
	}
	if got := string(readFile(t, k, "/edit-vs-delete")); got != "v2 from b" {
		t.Fatalf("edit-vs-delete: %q", got)
	}
	if _, err := k.Resolve("/gone-on-a"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("gone-on-a: %v", err)
	}
	var rn []string
	for _, n := range names(t, k, "/") {
		if strings.HasPrefix(n, "renamed") {
			rn = append(rn, n)
		}
	}
	if len(rn) != 1 {
		t.Fatalf("renamed on both: %q", rn)
	}
	if got := names(t, k, "/new"); strings.Join(got, ",") != "fa,fb" {
		t.Fatalf("/new: %q", got)
	}
}

// conflictStamp is the time part of the one conflict copy in /shared.
func conflictStamp(t *testing.T, f *FS) string {
	for _, n := range names(t, f, "/shared") {
		if i := strings.Index(n, "(conflict laptop "); i >= 0 {
			return strings.TrimSuffix(n[i+len("(conflict laptop "):], ").txt")
		}
	}
	return "missing"
}

// Mkdir2 is Mkdir by path for tests.
func (f *FS) Mkdir2(t *testing.T, p string) error {
	dir, name := filepath.Split(p)
	_, err := f.Mkdir(must(f.Resolve(dir)), name, 0o755)
	return err
}

// Live refresh: Refresh merges another device's new root and reports what changed.
func TestRefreshMergesAndReports(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	f := e.device("a").open()
	g := e.device("b").open()
	var got []Changes
	g.SetOnMerge(func(c Changes) { got = append(got, c) })
	writeFile(t, f, "/new", []byte("n"))
	ok(t, f.Sync(ctx()))
	ok(t, g.Refresh(ctx()))
	if s := string(readFile(t, g, "/new")); s != "n" {
		t.Fatalf("/new on b: %q", s)
	}
	if len(got) != 1 || len(got[0].Entries) != 1 || got[0].Entries[0] != (Entry{RootIno, "new"}) {
		t.Fatalf("changes %+v", got)
	}
	if !slices.Contains(got[0].Inodes, RootIno) {
		t.Fatalf("the root directory's change is not reported: %+v", got[0])
	}
	// Nothing new: one poll, no merge.
	ok(t, g.Refresh(ctx()))
	if len(got) != 1 {
		t.Fatalf("a refresh without a new root merged: %+v", got)
	}
}

// gc's root retention: old root pointers go, but never the roots from the oldest device's
// anchor on (it must check the chain and merge from there), and a read-only cache whose
// roots were collected still opens.
func TestCollectRootsKeepsDeviceAnchors(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	ro := e.device("reader")
	ro.opts.ReadOnly = true
	b := e.device("b")
	g := b.open()
	for i := 0; i < 5; i++ {
		writeFile(t, g, "/f", []byte{byte(i)})
		ok(t, g.Sync(ctx()))
	}
	r := ro.open()
	ok(t, r.Close())
	for i := 0; i < 5; i++ {
		writeFile(t, g, "/f", []byte{byte(i)})
		ok(t, g.Sync(ctx()))
	}
	a := e.device("a")
	f := a.open() // anchor: the current root, recorded in a's presence
	aAnchor := f.anchorSeq()
	ok(t, f.Close())
	for i := 0; i < 10; i++ {
		writeFile(t, g, "/f", []byte{byte(i)})
		ok(t, g.Sync(ctx()))
	}
	newest := g.anchorSeq()
	n, err := g.CollectRoots(ctx(), 3)
	ok(t, err)
	if want := int(aAnchor - 1); n != want {
		t.Fatalf("deleted %d roots, want %d (all below a's anchor %d)", n, want, aAnchor)
	}
	for seq := uint64(1); seq <= newest; seq++ {
		_, err := e.store.Stat(ctx(), rootName(seq))
		if (err == nil) != (seq >= aAnchor) {
			t.Fatalf("root %d: %v (a's anchor %d)", seq, err, aAnchor)
		}
	}
	live, err := g.gcLive(ctx(), 3)
	ok(t, err)
	if !live[rootName(aAnchor)] || live[rootName(aAnchor-1)] {
		t.Fatal("live set does not match the kept roots")
	}
	writeFile(t, g, "/g", []byte("g"))
	ok(t, g.Sync(ctx()))
	f = a.open() // checks the chain from its anchor, merges
	if got := string(readFile(t, f, "/g")); got != "g" {
		t.Fatal(got)
	}
	ok(t, f.Close())
	r = ro.open() // its anchor's successors are gone: loads the newest root
	if got := string(readFile(t, r, "/g")); got != "g" {
		t.Fatal(got)
	}
	// A running read-only mount whose anchor's objects gc deleted still refreshes.
	writeFile(t, g, "/f", []byte("replaced"))
	ok(t, g.Sync(ctx()))
	_, err = ForgetDevice(ctx(), e.store, e.keys, "a") // else a's anchor keeps the reader's
	ok(t, err)
	_, err = g.CollectRoots(ctx(), 1)
	ok(t, err)
	_, err = maint.GC(ctx(), e.store, e.keys, maint.GCOptions{Live: g.GCLive, Owner: "test"})
	ok(t, err)
	if _, err := r.loadSide(ctx(), r.anchorSeq()); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("the reader's base is still readable (%v): the test does not test anything", err)
	}
	writeFile(t, g, "/h", []byte("h"))
	ok(t, g.Sync(ctx()))
	ok(t, r.Refresh(ctx()))
	if got := string(readFile(t, r, "/h")); got != "h" {
		t.Fatal(got)
	}
}

func rootName(seq uint64) string { return dedup.RootName(seq) }

// TestOwnRootAfterKill: kill -9 after a root's Put but before the batch with the anchor
// update reached the db. The next open continues after that root (it is this cache's own)
// instead of merging with it, which made conflict copies of the device's own files
// (TestCrashKill9 found it: "trunc-0/t0 (conflict ...)").
func TestOwnRootAfterKill(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	writeFile(t, f, "/a", []byte("one"))
	ok(t, f.Sync(ctx()))
	var seq, committed uint64
	var hash []byte
	f.db.View(func(tx *bolt.Tx) error {
		seq, committed = getU64(tx, mAnchorSeq), getU64(tx, mCommitted)
		hash = append([]byte(nil), tx.Bucket(bMeta).Get([]byte(mAnchorHash))...)
		return nil
	})
	writeFile(t, f, "/a", []byte("two"))
	ok(t, f.Sync(ctx()))                   // root seq+1 holds "two"
	writeFile(t, f, "/a", []byte("three")) // close-acknowledged, not in a root
	f.crash()

	// The anchor update of root seq+1 never reached the db.
	db, err := bolt.Open(filepath.Join(e.cache, "state.db"), 0o600, nil)
	ok(t, err)
	ok(t, db.Update(func(tx *bolt.Tx) error {
		ok(t, putU64(tx, mAnchorSeq, seq))
		ok(t, putU64(tx, mCommitted, committed))
		return tx.Bucket(bMeta).Put([]byte(mAnchorHash), hash)
	}))
	ok(t, db.Close())

	f = e.open()
	if got := listTree(t, f); len(got) != 1 || !strings.HasPrefix(got[0], "/a ") {
		t.Fatalf("tree after reopen: %q, want only /a", got)
	}
	if got := readFile(t, f, "/a"); string(got) != "three" {
		t.Fatalf("/a = %q, want the close-acknowledged \"three\"", got)
	}
	ok(t, f.Sync(ctx()))
	f.Close()
	e.cache = t.TempDir() // a fresh cache sees the same
	if got := readFile(t, e.open(), "/a"); string(got) != "three" {
		t.Fatalf("fresh cache: /a = %q, want \"three\"", got)
	}
}

// vanishStore deletes each content object once right after storing it while armed, like a
// gc (or a tamper) that collects an upload before the root that references it is written.
// It hides the local store's Path, so the core keeps a read-cache copy of what it uploads.
type vanishStore struct {
	backend.Store
	mu      sync.Mutex
	armed   bool
	deleted map[string]bool
}

func (s *vanishStore) arm(on bool) {
	s.mu.Lock()
	s.armed = on
	s.mu.Unlock()
}

func (s *vanishStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	err := s.Store.Put(ctx, name, r, size)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.armed && strings.HasPrefix(name, "c/") && !s.deleted[name] {
		if s.deleted == nil {
			s.deleted = map[string]bool{}
		}
		s.deleted[name] = true
		s.Store.Delete(ctx, name)
	}
	return err
}

// localVanishStore is vanishStore that keeps the local store's Path: the core reads the
// store's files directly and keeps no copy of its uploads.
type localVanishStore struct {
	*vanishStore
	path func(string) (string, error)
}

func (s localVanishStore) Path(name string) (string, error) { return s.path(name) }

// "No root ever references a missing object" (docs/core.md, "Several devices"): a content
// object gone from the store between its upload and the root is uploaded again from the
// cache's copy before the root is written; without a copy the files that use it stay at
// their last stored version (a new one stays out), the root is written, and the commit
// fails (EIO, naming the files).
func TestMissingObjectBeforeRoot(t *testing.T) {
	t.Run("restored from the cache", func(t *testing.T) {
		e := newEnv(t)
		e.opts.CommitDelay = 1 << 40
		vs := &vanishStore{Store: e.store}
		e.store = vs
		f := e.open()
		data := randBytes(200_000)
		vs.arm(true)
		writeFile(t, f, "/photo.jpg", data)
		ok(t, f.Sync(ctx()))
		vs.arm(false)
		ok(t, f.Close())
		e.cache = t.TempDir()
		f = e.open()
		if got := readFile(t, f, "/photo.jpg"); !bytes.Equal(got, data) {
			t.Fatal("content differs from a fresh cache")
		}
	})
	t.Run("no copy left", func(t *testing.T) {
		// The files that use the lost object stay at their last stored version (a new
		// one stays out), the rest of the change is stored, and Sync reports EIO naming
		// the file; writing the file again lets it through.
		e := newEnv(t)
		e.opts.CommitDelay = 1 << 40
		ls := e.store.(*local.Store)
		vs := &vanishStore{Store: ls}
		e.store = localVanishStore{vs, ls.Path}
		f := e.open()
		writeFile(t, f, "/keep.txt", []byte("kept"))
		writeFile(t, f, "/old.jpg", []byte("old version"))
		ok(t, f.Sync(ctx()))
		vs.arm(true)
		writeFile(t, f, "/photo.jpg", randBytes(200_000))
		writeFile(t, f, "/old.jpg", randBytes(150_000))
		err := f.Sync(ctx())
		vs.arm(false)
		writeFile(t, f, "/other.txt", []byte("other")) // stored although the photos are not
		err2 := f.Sync(ctx())
		for _, err := range []error{err, err2} {
			wantErr(t, err, syscall.EIO)
			if !errors.Is(err, rootsync.ErrMissing) || !strings.Contains(err.Error(), "/photo.jpg") || !strings.Contains(err.Error(), "/old.jpg") {
				t.Fatalf("error does not say what is missing and which files use it: %v", err)
			}
		}
		check := func(what string, want map[string]string) {
			t.Helper()
			g := e.device("fresh-" + what).open()
			defer g.Close()
			for p, w := range want {
				if w == "" {
					if _, err := g.Resolve(p); err == nil {
						t.Fatalf("%s: a fresh cache has %s, whose content is lost", what, p)
					}
					continue
				}
				if got := readFile(t, g, p); string(got) != w {
					t.Fatalf("%s: a fresh cache reads %s as %q, want %q", what, p, got, w)
				}
			}
		}
		// fsync: EIO for a file left out, not for another one.
		writeFile(t, f, "/keep.txt", []byte("kept, fsynced"))
		ok(t, f.FsyncIno(ctx(), must(f.Resolve("/keep.txt"))))
		wantErr(t, f.FsyncIno(ctx(), must(f.Resolve("/photo.jpg"))), syscall.EIO)
		check("lost", map[string]string{"/keep.txt": "kept, fsynced", "/other.txt": "other", "/old.jpg": "old version", "/photo.jpg": ""})
		// Writing the files again stores them again; then the root has them.
		writeFile(t, f, "/photo.jpg", []byte("written again"))
		writeFile(t, f, "/old.jpg", []byte("new version"))
		ok(t, f.Sync(ctx()))
		ok(t, f.Close())
		check("rewritten", map[string]string{"/keep.txt": "kept, fsynced", "/other.txt": "other", "/old.jpg": "new version", "/photo.jpg": "written again"})
	})
}

// Files that arrive from another device by a merge reach OnSealed (the near-duplicate
// indexer queues them, so .similar/ shows other devices' photos without a remount): new
// files, new versions; and files the merge removed, so the indexer drops them. This
// device's own unchanged files do not.
func TestMergeReportsArrivedContent(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	f := e.device("a").open()
	var mu sync.Mutex
	sealed := map[Ino]int{}
	b := e.device("b")
	b.opts.OnSealed = func(ino Ino) {
		mu.Lock()
		sealed[ino]++
		mu.Unlock()
	}
	writeFile(t, f, "/old.jpg", []byte("old"))
	writeFile(t, f, "/gone.jpg", []byte("gone"))
	ok(t, f.Sync(ctx()))
	g := b.open()
	mine := writeFile(t, g, "/mine.jpg", []byte("mine"))
	ok(t, g.Sync(ctx()))
	ok(t, f.Refresh(ctx()))
	waitFor := func(what string, cond func(map[Ino]int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			done := cond(sealed)
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: OnSealed saw %v", what, sealed)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("b's own file", func(s map[Ino]int) bool { return s[mine] == 1 })
	newIno := writeFile(t, f, "/new.jpg", []byte("new"))
	oldIno := writeFile(t, f, "/old.jpg", []byte("old, version 2"))
	goneIno := must(f.Resolve("/gone.jpg"))
	ok(t, f.Remove(RootIno, "gone.jpg", false))
	ok(t, f.Sync(ctx()))
	ok(t, g.Refresh(ctx()))
	waitFor("after the merge", func(s map[Ino]int) bool { return s[newIno] == 1 && s[oldIno] == 1 && s[goneIno] == 1 })
	mu.Lock()
	defer mu.Unlock()
	if sealed[mine] != 1 {
		t.Fatalf("this device's unchanged file was reported again: %v", sealed)
	}
}

// A file open on one device and deleted by another: the merge keeps it as an orphan while
// it is open, and the last close deletes it. Before, the merge did not mark the open file
// unlinked, so the orphan outlived the close and the device's presence record said it
// held unsynced work ("files deleted while open"), which made gc refuse after clean
// unmounts.
func TestMergedDeleteOfOpenFile(t *testing.T) {
	e := newEnv(t)
	e.opts.RefreshInterval = -1
	f := e.device("a").open()
	writeFile(t, f, "/photo", []byte("v1"))
	ok(t, f.Sync(ctx()))
	g := e.device("b").open()
	h, err := g.OpenFile(must(g.Resolve("/photo")), os.O_RDONLY)
	ok(t, err)
	ok(t, f.Remove(RootIno, "photo", false))
	ok(t, f.Sync(ctx()))
	ok(t, g.Refresh(ctx()))
	if got := string(readAllHandle(t, h)); got != "v1" {
		t.Fatalf("the open file reads %q after the merged delete", got)
	}
	ok(t, h.Release())
	ok(t, g.Sync(ctx()))
	if w := g.localWork(); w != "" {
		t.Fatalf("after the last close and a sync, b reports local work: %s", w)
	}
	if _, err := g.Resolve("/photo"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("/photo on b: %v", err)
	}
}
