package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/imgfs/imgfs/backend/local"
	"github.com/imgfs/imgfs/dedup"
)

// syncRecorder is a local store that remembers which objects PutUnsynced stored and no
// SyncPuts has made durable since, so a test can check what references them and can lose
// them as a power loss of the store's disk would.
type syncRecorder struct {
	*local.Store
	dir      string
	mu       sync.Mutex
	unsynced map[string]bool
	syncs    int
}

func newSyncRecorder(t testing.TB) *syncRecorder {
	s, dir := testStore(t)
	return &syncRecorder{Store: s, dir: dir, unsynced: map[string]bool{}}
}

func (s *syncRecorder) PutUnsynced(ctx context.Context, name string, r io.Reader, size int64) error {
	err := s.Store.PutUnsynced(ctx, name, r, size)
	if err == nil {
		s.mu.Lock()
		s.unsynced[name] = true
		s.mu.Unlock()
	}
	return err
}

func (s *syncRecorder) SyncPuts(ctx context.Context) error {
	s.mu.Lock()
	before := make([]string, 0, len(s.unsynced))
	for n := range s.unsynced {
		before = append(before, n)
	}
	s.mu.Unlock()
	err := s.Store.SyncPuts(ctx)
	if err == nil {
		s.mu.Lock()
		for _, n := range before {
			delete(s.unsynced, n)
		}
		s.syncs++
		s.mu.Unlock()
	}
	return err
}

func (s *syncRecorder) isUnsynced(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unsynced[name]
}

// loseUnsynced deletes the objects no SyncPuts made durable (a power loss of the store).
func (s *syncRecorder) loseUnsynced(t testing.TB) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name := range s.unsynced {
		p, err := s.Path(name)
		ok(t, err)
		if os.Remove(p) == nil {
			n++
		}
	}
	s.unsynced = map[string]bool{}
	return n
}

func (f *FS) pendingCount(t testing.TB) int {
	n := 0
	ok(t, f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bPending).ForEach(func(_, _ []byte) error {
			n++
			return nil
		})
	}))
	return n
}

// The background sealers store chunks unsynced and swap an inode to its chunk list only
// after a SyncPuts (durable.go): no swap, and so no journal record, commit or root, ever
// references an object that is not durable; one SyncPuts serves many files.
func TestDeferredSwapAfterStoreSync(t *testing.T) {
	e := newEnv(t)
	rec := newSyncRecorder(t)
	e.store = rec
	var f *FS
	var bad []string
	var badMu sync.Mutex
	swaps := 0
	e.opts.OnSealed = func(ino Ino) {
		var n inode
		ok(t, f.view(func(tx *bolt.Tx) error {
			var err error
			n, err = f.getInode(tx, ino)
			return err
		}))
		badMu.Lock()
		defer badMu.Unlock()
		swaps++
		for _, c := range n.Ref.Chunks() {
			if name := dedup.ContentName(c.Locator); rec.isUnsynced(name) {
				bad = append(bad, name)
			}
		}
	}
	f = e.open()
	files := map[string][]byte{}
	for i := 0; i < 30; i++ {
		data := randBytes(1000 + i*37_000)
		name := fmt.Sprintf("/f%02d", i)
		files[name] = data
		writeFile(t, f, name, data)
	}
	deadline := time.Now().Add(60 * time.Second)
	for f.pendingCount(t) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d records still pending after 60 s", f.pendingCount(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	badMu.Lock()
	if len(bad) > 0 {
		t.Fatalf("an inode was swapped to unsynced objects: %v", bad)
	}
	if swaps != len(files) {
		t.Fatalf("%d swaps, want %d", swaps, len(files))
	}
	badMu.Unlock()
	rec.mu.Lock()
	syncs := rec.syncs
	rec.mu.Unlock()
	if syncs == 0 || syncs >= len(files) {
		t.Fatalf("%d store syncs for %d files, want at least 1 and fewer than one per file", syncs, len(files))
	}
	for name, data := range files {
		if got := readFile(t, f, name); !bytes.Equal(got, data) {
			t.Fatalf("%s reads wrong", name)
		}
	}
}

// kill -9 of the daemon together with a power loss of the store's disk, while sealed files
// wait for the store's sync: every closed file reads back whole after the reopen (the
// records still point at the spools, which are sealed again).
func TestDeferredSwapStoreLoss(t *testing.T) {
	old := batchDelay
	batchDelay = time.Hour // no flush of the deferred swaps: they all wait
	t.Cleanup(func() { batchDelay = old })
	e := newEnv(t)
	rec := newSyncRecorder(t)
	e.store = rec
	f := e.open()
	files := map[string][]byte{}
	for i := 0; i < 8; i++ {
		data := randBytes(5000 + i*91_000)
		name := fmt.Sprintf("/g%d", i)
		files[name] = data
		writeFile(t, f, name, data)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		f.dur.mu.Lock()
		n := len(f.dur.swaps)
		f.dur.mu.Unlock()
		if n == len(files) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d seals deferred after 60 s", n, len(files))
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.crash()
	if lost := rec.loseUnsynced(t); lost == 0 {
		t.Fatal("no unsynced object to lose: the test tests nothing")
	}
	f = e.open()
	for name, data := range files {
		if got := readFile(t, f, name); !bytes.Equal(got, data) {
			t.Fatalf("%s reads wrong after kill -9 and the store's power loss", name)
		}
	}
	ok(t, f.Sync(ctx()))
	if n := f.pendingCount(t); n != 0 {
		t.Fatalf("%d records pending after Sync", n)
	}
}

// Fsync of a file whose background seal waits for the store's sync: the Fsync flushes the
// deferred swaps (one SyncPuts) instead of sealing again, and returns with the file stored.
func TestFsyncFlushesDeferredSwap(t *testing.T) {
	old := batchDelay
	batchDelay = time.Hour
	t.Cleanup(func() { batchDelay = old })
	e := newEnv(t)
	rec := newSyncRecorder(t)
	e.store = rec
	f := e.open()
	data := randBytes(300_000)
	_, h, err := f.Create(RootIno, "a", 0o644, true)
	ok(t, err)
	must(h.WriteAt(data, 0))
	ok(t, h.Flush())
	deadline := time.Now().Add(60 * time.Second)
	for {
		f.dur.mu.Lock()
		n := len(f.dur.swaps)
		f.dur.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the seal was not deferred after 60 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ok(t, h.Fsync(ctx()))
	ok(t, h.Release())
	if n := f.pendingCount(t); n != 0 {
		t.Fatalf("%d records pending after Fsync", n)
	}
	rec.mu.Lock()
	left := len(rec.unsynced)
	rec.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d objects unsynced after Fsync", left)
	}
	if got := readFile(t, f, "/a"); !bytes.Equal(got, data) {
		t.Fatal("reads wrong")
	}
}
