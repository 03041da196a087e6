package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/imgfs/imgfs/backend"
	"github.com/imgfs/imgfs/dedup"
)

// failStore makes Put of content objects fail while fail is set (a store outage).
type failStore struct {
	backend.Store
	fail atomic.Bool
	puts atomic.Int64
}

var errOutage = backend.Transient(errors.New("simulated store outage"))

func (s *failStore) Put(ctx context.Context, name string, r io.Reader, size int64) error {
	if s.fail.Load() && (strings.HasPrefix(name, "c/") || strings.HasPrefix(name, "r/")) {
		return errOutage
	}
	if strings.HasPrefix(name, "c/") {
		s.puts.Add(1)
	}
	return s.Store.Put(ctx, name, r, size)
}

func countObjects(t testing.TB, s backend.Store, prefix string) int {
	n := 0
	ok(t, s.List(ctx(), prefix, func(backend.Info) error { n++; return nil }))
	return n
}

func TestCrashReplay(t *testing.T) {
	e := newEnv(t)
	fs := &failStore{Store: e.store}
	e.store = fs
	f := e.open()
	old := randBytes(100_000)
	writeFile(t, f, "/keep", old)
	ok(t, f.Sync(ctx()))

	fs.fail.Store(true) // seals cannot finish: only the spool holds the new data
	closed := randBytes(150_000)
	writeFile(t, f, "/closed", closed) // close-acknowledged
	rewritten := randBytes(80_000)
	writeFile(t, f, "/keep", rewritten) // rewrite, close-acknowledged
	_, h, err := f.Create(RootIno, "unflushed", 0o644, true)
	ok(t, err)
	must(h.WriteAt([]byte("never closed"), 0))
	// An open handle on /keep with an unflushed overwrite.
	hk := must(f.OpenFile(must(f.Resolve("/keep")), os.O_RDWR))
	must(hk.WriteAt([]byte("XXXX"), 0))
	if st := f.Status(); st.PendingSeals != 2 {
		t.Fatalf("pending seals %d, want 2", st.PendingSeals)
	}
	f.crash() // kill -9: no flush, no commit, lease left behind

	fs.fail.Store(false)
	f = e.open() // same cache: own stale lease is taken back, journal replayed
	if got := readFile(t, f, "/closed"); !bytes.Equal(got, closed) {
		t.Fatal("/closed differs after crash")
	}
	if got := readFile(t, f, "/keep"); !bytes.Equal(got, rewritten) {
		t.Fatal("/keep is not the close-acknowledged version")
	}
	// Never closed: its creation was not acknowledged durable (group commit), its data never.
	if a, err := f.Lookup(RootIno, "unflushed"); err == nil && a.Size != 0 {
		t.Fatalf("unflushed file has size %d", a.Size)
	} else if err != nil && !errors.Is(err, syscall.ENOENT) {
		t.Fatal(err)
	}
	ok(t, f.Sync(ctx()))
	if st := f.Status(); st.PendingSeals != 0 || st.PendingCommit {
		t.Fatalf("status after sync %+v", st)
	}
	if n := usedSpoolFiles(t, f); n != 0 {
		t.Fatalf("%d spool files with data left", n)
	}
	ok(t, f.Close())
	e.cache = t.TempDir() // machine loss after sync: everything is in the store
	f = e.open()
	if got := readFile(t, f, "/closed"); !bytes.Equal(got, closed) {
		t.Fatal("/closed differs from a fresh cache")
	}
	if got := readFile(t, f, "/keep"); !bytes.Equal(got, rewritten) {
		t.Fatal("/keep differs from a fresh cache")
	}
}

func TestFsyncSurvivesMachineLoss(t *testing.T) {
	e := newEnv(t)
	e.opts.CommitDelay = 1 << 40 // only Fsync commits
	fs := &failStore{Store: e.store}
	e.store = fs
	f := e.open()
	data := randBytes(123_456)
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt(data, 0))
	ok(t, h.Fsync(ctx()))
	writeFile(t, f, "/closed-only", []byte("x")) // not fsynced, maybe lost
	// Store outage: Fsync reports EIO and keeps the data.
	fs.fail.Store(true)
	must(h.WriteAt([]byte("more"), int64(len(data))))
	wantErr(t, h.Fsync(ctx()), syscall.EIO)
	fs.fail.Store(false)
	ok(t, h.Release())
	f.crash()

	e.cache = t.TempDir()    // the spool is gone
	e.opts.BreakLease = true // the lease of the lost machine's mount (same pid here)
	f = e.open()
	if got := readFile(t, f, "/a"); !bytes.Equal(got, data) {
		t.Fatal("fsynced file lost with the machine")
	}
}

func TestRollbackRefused(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	writeFile(t, f, "/one", []byte("1"))
	ok(t, f.Sync(ctx()))
	var oldRoots []string
	ok(t, e.store.List(ctx(), "r/", func(i backend.Info) error { oldRoots = append(oldRoots, i.Name); return nil }))
	writeFile(t, f, "/two", []byte("2"))
	ok(t, f.Sync(ctx()))
	ok(t, f.Close())

	// The store rolls back: newer roots deleted.
	var newer []string
	ok(t, e.store.List(ctx(), "r/", func(i backend.Info) error {
		if !contains(oldRoots, i.Name) {
			newer = append(newer, i.Name)
		}
		return nil
	}))
	if len(newer) == 0 {
		t.Fatal("no newer root")
	}
	saved := map[string][]byte{}
	for _, n := range newer {
		saved[n] = must(readAll(ctx(), e.store, n, 1<<20))
		ok(t, e.store.Delete(ctx(), n))
	}
	opts := e.opts
	opts.CacheDir = e.cache
	_, err := Open(ctx(), e.store, e.keys, opts)
	if err == nil || !strings.Contains(err.Error(), "rollback detected") || !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback not refused: %v", err)
	}
	// Fork: a valid root under the anchor's sequence number but with other contents.
	last := newer[len(newer)-1]
	for _, n := range newer {
		ok(t, e.store.Put(ctx(), n, bytes.NewReader(saved[n]), int64(len(saved[n]))))
	}
	seq := must(dedup.ParseRootName(last))
	plain := must(dedup.OpenRoot(e.keys.MetaKey, seq, saved[last]))
	forged, _ := must2(dedup.SealRoot(e.keys.MetaKey, seq, plain)) // same plaintext, new salt
	ok(t, e.store.Delete(ctx(), last))
	ok(t, e.store.Put(ctx(), last, bytes.NewReader(forged), int64(len(forged))))
	_, err = Open(ctx(), e.store, e.keys, opts)
	if err == nil || !strings.Contains(err.Error(), "rollback detected") {
		t.Fatalf("fork not refused: %v", err)
	}
	// A fresh client trusts the store (TOFU).
	e.cache = t.TempDir()
	f = e.open()
	if got := string(readFile(t, f, "/two")); got != "2" {
		t.Fatal(got)
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// T36: exact dedup.
func TestExactDedup(t *testing.T) {
	e := newEnv(t)
	var sealed atomic.Int64
	e.opts.OnSealed = func(Ino) { sealed.Add(1) }
	f := e.open()
	img := randBytes(500_000)
	must(f.Mkdir(RootIno, "d", 0o755))
	for i := 0; i < 100; i++ {
		writeFile(t, f, "/d/copy"+itoa(i)+".jpg", img)
	}
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "c/"); n != 1 {
		t.Fatalf("%d content objects for one image under 100 names", n)
	}
	st := f.Status()
	if st.ContentObjects != 1 || st.Files != 100 || st.LogicalBytes != 100*500_000 || st.StoredBytes != dedup.ObjectSize(500_000) {
		t.Fatalf("status %+v", st)
	}
	if sealed.Load() != 100 {
		t.Fatalf("OnSealed called %d times", sealed.Load())
	}
	// Rename and hard link: no new object.
	ok(t, f.Rename(must(f.Resolve("/d")), "copy0.jpg", RootIno, "moved.jpg"))
	must(f.Link(must(f.Resolve("/moved.jpg")), RootIno, "linked.jpg"))
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "c/"); n != 1 {
		t.Fatalf("%d content objects after rename+link", n)
	}
	// One changed byte: a new object.
	img2 := bytes.Clone(img)
	img2[250_000] ^= 1
	writeFile(t, f, "/d/copy1.jpg", img2)
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "c/"); n != 2 {
		t.Fatalf("%d content objects after a one-byte change", n)
	}
	// ContentID equality = byte identity.
	id1, ok1, err := f.ContentID(must(f.Resolve("/d/copy2.jpg")))
	ok(t, err)
	id2, ok2, _ := f.ContentID(must(f.Resolve("/moved.jpg")))
	id3, ok3, _ := f.ContentID(must(f.Resolve("/d/copy1.jpg")))
	if !ok1 || !ok2 || !ok3 || id1 != id2 || id1 == id3 {
		t.Fatal("ContentID does not follow content")
	}
	h := must(f.OpenFile(must(f.Resolve("/d/copy2.jpg")), os.O_RDWR))
	must(h.WriteAt([]byte{1}, 0))
	if _, ok, _ := f.ContentID(h.Ino()); ok {
		t.Fatal("ContentID ok with unflushed writes")
	}
	ok(t, h.Release())
	if _, ok, _ := f.ContentID(h.Ino()); ok {
		t.Fatal("ContentID ok before sealing")
	}
	ok(t, f.Sync(ctx()))
	files := 0
	ok(t, f.ForEachFile(func(ino Ino, id [32]byte) error { files++; return nil }))
	if files != 100 { // 99 in d + moved (= linked)
		t.Fatalf("ForEachFile saw %d files", files)
	}
	live := must(f.ReferencedObjects(ctx()))
	ok(t, e.store.List(ctx(), "", func(i backend.Info) error {
		if strings.HasPrefix(i.Name, "c/") && !live[i.Name] {
			t.Errorf("content object %s not in the live set", i.Name)
		}
		return nil
	}))
	n := 0
	for name := range live {
		if strings.HasPrefix(name, "r/") {
			n++
		}
		if _, err := e.store.Stat(ctx(), name); err != nil {
			t.Errorf("live object %s: %v", name, err)
		}
	}
	if n != 1 {
		t.Fatalf("%d roots in the live set", n)
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestAuxTables(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	for i := 0; i < 50; i++ {
		ok(t, f.PutAux("emb", []byte("k"+itoa(i)), bytes.Repeat([]byte{byte(i)}, 864*4)))
	}
	ok(t, f.PutAux("other", []byte("x"), []byte("y")))
	ok(t, f.DeleteAux("emb", []byte("k7")))
	ok(t, f.Sync(ctx()))
	metas := countObjects(t, e.store, "m/")
	// Changing only the tree must not rewrite the aux objects: a new directory rewrites
	// the root directory's shard and the shard of this cache's inode range.
	must(f.Mkdir(RootIno, "d", 0o755))
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "m/"); n != metas+2 {
		t.Fatalf("meta objects %d -> %d, want two new tree objects", metas, n)
	}
	// One changed entry rewrites one unit of its table, not the table.
	ok(t, f.PutAux("emb", []byte("k3"), []byte("changed")))
	ok(t, f.Sync(ctx()))
	if n := countObjects(t, e.store, "m/"); n != metas+3 {
		t.Fatalf("meta objects %d -> %d, want one new aux unit", metas+2, n)
	}
	ok(t, f.PutAux("emb", []byte("k3"), bytes.Repeat([]byte{3}, 864*4)))
	ok(t, f.Close())
	e.cache = t.TempDir()
	f = e.open()
	n := 0
	ok(t, f.ForEachAux("emb", func(k, v []byte) error {
		n++
		if len(v) != 864*4 {
			t.Fatalf("value length %d", len(v))
		}
		return nil
	}))
	if n != 49 {
		t.Fatalf("%d emb entries", n)
	}
	if v := must(f.GetAux("other", []byte("x"))); string(v) != "y" {
		t.Fatal(string(v))
	}
	_, err := f.GetAux("emb", []byte("k7"))
	wantErr(t, err, syscall.ENOENT)
}

func TestStatfs(t *testing.T) {
	e := newEnv(t)
	e.opts.SpoolLimit = 1 << 20
	f := e.open()
	s := must(f.Statfs())
	if s.Bsize != 4096 || s.Blocks != 256 || s.Bavail == 0 || s.Bavail > 256 {
		t.Fatalf("statfs %+v", s)
	}
}

// Editor-style save: once rename returns, a kill -9 keeps the new version under the name.
func TestRenameSurvivesCrash(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	writeFile(t, f, "/doc", []byte("old"))
	writeFile(t, f, "/.doc.tmp", []byte("new"))
	ok(t, f.Rename(RootIno, ".doc.tmp", RootIno, "doc"))
	f.crash()
	f = e.open()
	if got := string(readFile(t, f, "/doc")); got != "new" {
		t.Fatalf("after crash: %q", got)
	}
	if _, err := f.Lookup(RootIno, ".doc.tmp"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("temp name still there: %v", err)
	}
}

// Sync while other files are rewritten: a spool superseded (and deleted) between reading its
// journal record and opening it is not an error.
func TestSyncRacesWithRewrites(t *testing.T) {
	e := newEnv(t)
	f := e.open()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 60; i++ {
			writeFile(t, f, "/busy", randBytes(50_000))
		}
	}()
	for i := 0; i < 20; i++ {
		ok(t, f.Sync(ctx()))
	}
	<-done
	ok(t, f.Sync(ctx()))
}
